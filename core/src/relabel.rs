//! Relabeling, step for step as Prometheus' `model/relabel` does it.
//!
//! `hashmod` is bit-identical to Prometheus: MD5 of the joined source values, the last 8 bytes
//! of the digest as a big-endian u64, modulo `modulus`. That is what decides which worker owns
//! which target, so a fleet sharded by hand with Prometheus and one sharded by promlake agree.

use std::borrow::Cow;

use crate::config::{Action, RelabelConfig};
use crate::labels::{Label, LabelsBuilder, is_valid_label_name};
use md5::{Digest, Md5};

/// Applies `rules` in order. Returns false when a rule drops the label set.
pub fn process(rules: &[RelabelConfig], lb: &mut LabelsBuilder) -> bool {
    rules.iter().all(|r| apply(r, lb))
}

/// `hashmod` of a value: MD5, last 8 bytes big-endian, modulo `modulus`.
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut last8 = [0u8; 8];
    last8.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(last8) % modulus
}

/// The source label values joined with the separator; borrowed when there is one source.
fn joined<'b>(cfg: &RelabelConfig, lb: &'b LabelsBuilder) -> Cow<'b, str> {
    match cfg.sources() {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(lb.get(one)),
        many => {
            let mut s = String::new();
            for (i, name) in many.iter().enumerate() {
                if i > 0 {
                    s.push_str(&cfg.separator);
                }
                s.push_str(lb.get(name));
            }
            Cow::Owned(s)
        }
    }
}

fn apply(cfg: &RelabelConfig, lb: &mut LabelsBuilder) -> bool {
    let re = cfg.regex.regex();
    match cfg.action {
        Action::Drop => !re.is_match(&joined(cfg, lb)),
        Action::Keep => re.is_match(&joined(cfg, lb)),
        Action::DropEqual => lb.get(&cfg.target_label) != joined(cfg, lb),
        Action::KeepEqual => lb.get(&cfg.target_label) == joined(cfg, lb),
        Action::Replace => {
            let val = joined(cfg, lb).into_owned();
            let Some(caps) = re.captures(&val) else {
                return true; // no match, no replacement
            };
            let mut target = String::new();
            caps.expand(&cfg.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&cfg.replacement, &mut res);
            if res.is_empty() {
                lb.del(&target);
            } else {
                lb.set(target, res);
            }
            true
        }
        Action::Lowercase => {
            let v = joined(cfg, lb).to_lowercase();
            lb.set(cfg.target_label.clone(), v);
            true
        }
        Action::Uppercase => {
            let v = joined(cfg, lb).to_uppercase();
            lb.set(cfg.target_label.clone(), v);
            true
        }
        Action::HashMod => {
            let m = hashmod(&joined(cfg, lb), cfg.modulus);
            lb.set(cfg.target_label.clone(), m.to_string());
            true
        }
        Action::LabelMap => {
            // Prometheus iterates over a snapshot: labels added here are not mapped again.
            let snapshot: Vec<Label> = lb.iter().cloned().collect();
            for l in snapshot {
                if re.is_match(&l.name) {
                    let name = re
                        .replace_all(&l.name, cfg.replacement.as_str())
                        .into_owned();
                    lb.set(name, l.value);
                }
            }
            true
        }
        Action::LabelDrop => {
            lb.retain(|l| !re.is_match(&l.name));
            true
        }
        Action::LabelKeep => {
            lb.retain(|l| re.is_match(&l.name));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::testdata::prometheus_file;
    use serde_json::Value;

    fn labels(v: &Value) -> Labels {
        Labels::from_pairs(
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())),
        )
    }

    /// All of Prometheus' `TestRelabel` cases, read from the reference file, with the configs as
    /// written (so promlake's defaults are exercised too).
    #[test]
    fn prometheus_relabel_cases() {
        let path = prometheus_file("relabel_cases.json");
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let cases = doc["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 34);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let rules: Vec<RelabelConfig> =
                serde_json::from_value(case["configs_as_written"].clone())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
            for r in &rules {
                r.validate().unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            // The defaults promlake filled in are the ones Prometheus' harness used.
            let mut effective: Vec<RelabelConfig> =
                serde_json::from_value(case["configs"].clone()).unwrap();
            // Go's harness writes an absent source list as `[]`.
            for (e, r) in effective.iter_mut().zip(&rules) {
                if r.source_labels.is_none() && e.sources().is_empty() {
                    e.source_labels = None;
                }
            }
            assert_eq!(rules, effective, "{name}: defaults");
            let mut lb = LabelsBuilder::new(labels(&case["input"]));
            let kept = process(&rules, &mut lb);
            if case["drop"].as_bool().unwrap() {
                assert!(!kept, "{name}: should be dropped");
            } else {
                assert!(kept, "{name}: should be kept");
                assert_eq!(lb.labels(), labels(&case["output"]), "{name}");
            }
            for check in case
                .get("hashmod_check")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let v = check["joined_value"].as_str().unwrap();
                let digest = Md5::digest(v.as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(hex, check["md5_hex"].as_str().unwrap());
                let last8 = u64::from_be_bytes(digest[8..16].try_into().unwrap());
                assert_eq!(last8.to_string(), check["last8_be_u64"].as_str().unwrap());
                assert_eq!(hashmod(v, 1000), check["mod"].as_u64().unwrap());
            }
        }
    }

    #[test]
    fn seed_sharding_keeps_one_quarter() {
        let rules: Vec<RelabelConfig> = serde_yaml::from_str(
            "- {source_labels: [__address__], modulus: 4, target_label: __tmp_hash, action: hashmod}\n- {source_labels: [__tmp_hash], regex: ^1$, action: keep}\n",
        )
        .unwrap();
        let kept = (0..400)
            .filter(|i| {
                let mut lb = LabelsBuilder::new(Labels::from_pairs([(
                    "__address__",
                    format!("10.0.{}.{}:9100", i / 256, i % 256),
                )]));
                process(&rules, &mut lb)
            })
            .count();
        assert!(
            (70..130).contains(&kept),
            "{kept} of 400 kept by shard 1 of 4"
        );
    }
}
