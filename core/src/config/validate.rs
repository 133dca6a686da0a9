//! What serde cannot check: Prometheus' defaults filled in, then relabel rules, timeouts, unique
//! job names, target addresses, storage URLs, region names and the alerting route, each error
//! with the key path it is about.

use super::*;

impl Config {
    /// Fills in Prometheus' defaults and checks what serde cannot: relabel rules, timeouts,
    /// unique job names, target addresses, storage URLs.
    pub(super) fn resolve_and_validate(&mut self) -> Result<(), (Vec<Seg>, String)> {
        let g = &self.global;
        if let Some(t) = g.scrape_timeout
            && t > g.scrape_interval
        {
            return Err((
                vec!["global".into(), "scrape_timeout".into()],
                "global scrape timeout greater than scrape interval".into(),
            ));
        }
        for (name, value) in &g.external_labels {
            if name.is_empty() || name == crate::labels::METRIC_NAME {
                return Err((
                    vec![
                        "global".into(),
                        "external_labels".into(),
                        name.as_str().into(),
                    ],
                    format!("{name:?} is not a valid external label name"),
                ));
            }
            if value.is_empty() {
                return Err((
                    vec![
                        "global".into(),
                        "external_labels".into(),
                        name.as_str().into(),
                    ],
                    format!("external label {name:?} has an empty value"),
                ));
            }
        }
        let global = self.global.clone();
        let mut seen = BTreeMap::new();
        for (i, job) in self.scrape_configs.iter_mut().enumerate() {
            let at = |rest: &[&str]| {
                let mut p: Vec<Seg> = vec!["scrape_configs".into(), i.into()];
                p.extend(rest.iter().map(|s| Seg::from(*s)));
                p
            };
            if job.job_name.is_empty() {
                return Err((at(&["job_name"]), "job_name is empty".into()));
            }
            if let Some(prev) = seen.insert(job.job_name.clone(), i) {
                return Err((
                    at(&["job_name"]),
                    format!(
                        "found multiple scrape configs with job name {:?} (also scrape_configs[{prev}])",
                        job.job_name
                    ),
                ));
            }
            let interval = *job.scrape_interval.get_or_insert(global.scrape_interval);
            if interval.is_zero() {
                return Err((
                    at(&["scrape_interval"]),
                    "scrape_interval must be above 0".into(),
                ));
            }
            match job.scrape_timeout {
                Some(t) if t > interval => {
                    return Err((
                        at(&["scrape_timeout"]),
                        format!(
                            "scrape timeout greater than scrape interval for scrape config with job name {:?}",
                            job.job_name
                        ),
                    ));
                }
                Some(_) => {}
                None => job.scrape_timeout = Some(global.scrape_timeout().min(interval)),
            }
            if job.scheme != "http" && job.scheme != "https" {
                return Err((
                    at(&["scheme"]),
                    format!("invalid scheme {:?}: must be http or https", job.scheme),
                ));
            }
            if !job.metrics_path.starts_with('/') {
                return Err((
                    at(&["metrics_path"]),
                    format!("metrics_path {:?} must start with '/'", job.metrics_path),
                ));
            }
            job.body_size_limit.get_or_insert(global.body_size_limit);
            job.sample_limit.get_or_insert(global.sample_limit);
            job.label_limit.get_or_insert(global.label_limit);
            job.label_name_length_limit
                .get_or_insert(global.label_name_length_limit);
            job.label_value_length_limit
                .get_or_insert(global.label_value_length_limit);
            job.target_limit.get_or_insert(global.target_limit);
            if job.scrape_protocols.is_none() {
                job.scrape_protocols = global.scrape_protocols.clone();
            }
            if let Some(p) = &job.scrape_protocols
                && p.is_empty()
            {
                return Err((
                    at(&["scrape_protocols"]),
                    "scrape_protocols cannot be empty".into(),
                ));
            }
            if let Some(b) = &job.basic_auth
                && b.password.is_some()
                && b.password_file.is_some()
            {
                return Err((
                    at(&["basic_auth"]),
                    "at most one of basic_auth password & password_file must be configured".into(),
                ));
            }
            if job.basic_auth.is_some() && job.authorization.is_some() {
                return Err((
                    at(&["authorization"]),
                    "at most one of basic_auth and authorization must be configured".into(),
                ));
            }
            for (j, sc) in job.static_configs.iter().enumerate() {
                for (k, t) in sc.targets.iter().enumerate() {
                    if let Err(m) = check_target_address(t) {
                        let mut p = at(&["static_configs"]);
                        p.extend([j.into(), "targets".into(), k.into()]);
                        return Err((p, m));
                    }
                }
                for name in sc.labels.keys() {
                    if name.is_empty() {
                        let mut p = at(&["static_configs"]);
                        p.extend([j.into(), "labels".into()]);
                        return Err((p, "empty label name".into()));
                    }
                }
            }
            for (j, fsd) in job.file_sd_configs.iter().enumerate() {
                for (k, f) in fsd.files.iter().enumerate() {
                    if !valid_file_sd_name(f) {
                        let mut p = at(&["file_sd_configs"]);
                        p.extend([j.into(), "files".into(), k.into()]);
                        return Err((
                            p,
                            format!(
                                "path name {f:?} is not valid for file discovery (must end in .json, .yml or .yaml)"
                            ),
                        ));
                    }
                }
            }
            for (key, rules) in [
                ("relabel_configs", &job.relabel_configs),
                ("metric_relabel_configs", &job.metric_relabel_configs),
            ] {
                validate_relabel(rules, at(&[key]))?;
            }
        }
        validate_relabel(
            &self.alerting.alert_relabel_configs,
            vec!["alerting".into(), "alert_relabel_configs".into()],
        )?;
        for (i, am) in self.alerting.alertmanagers.iter().enumerate() {
            let p = vec!["alerting".into(), "alertmanagers".into(), i.into()];
            if am.api_version != "v2" {
                let mut p = p.clone();
                p.push("api_version".into());
                return Err((
                    p,
                    format!(
                        "unsupported Alertmanager API version {:?}: promlake speaks v2",
                        am.api_version
                    ),
                ));
            }
            let mut rp = p.clone();
            rp.push("relabel_configs".into());
            validate_relabel(&am.relabel_configs, rp)?;
        }
        self.validate_routing()?;
        check_storage_url(&self.storage.url).map_err(|m| (vec!["storage".into()], m))?;
        if let Some(r) = &self.region {
            check_region_name(r).map_err(|m| (vec!["region".into()], m))?;
        }
        let mut names = BTreeMap::new();
        for (i, r) in self.regions.iter().enumerate() {
            let p = |k: &str| vec!["regions".into(), i.into(), k.into()];
            check_region_name(&r.name).map_err(|m| (p("name"), m))?;
            if names.insert(r.name.clone(), i).is_some() {
                return Err((p("name"), format!("region {:?} is listed twice", r.name)));
            }
            check_storage_url(&r.storage.url).map_err(|m| (p("storage"), m))?;
        }
        for (key, v) in [
            ("remote_write", &self.remote_write),
            ("remote_read", &self.remote_read),
            ("tracing", &self.tracing),
        ] {
            if v.is_some() {
                self.warnings.push(format!(
                    "{key} is a Prometheus setting that promlake does not use; it is ignored"
                ));
            }
        }
        Ok(())
    }

    pub(super) fn validate_routing(&self) -> Result<(), (Vec<Seg>, String)> {
        let a = &self.alerting;
        let mut names = BTreeMap::new();
        for (i, r) in a.receivers.iter().enumerate() {
            let p = vec![
                "alerting".into(),
                "receivers".into(),
                i.into(),
                "name".into(),
            ];
            if r.name.is_empty() {
                return Err((p, "receiver name is empty".into()));
            }
            if names.insert(r.name.clone(), i).is_some() {
                return Err((p, format!("receiver {:?} is defined twice", r.name)));
            }
            for (j, w) in r.webhook_configs.iter().enumerate() {
                if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                    return Err((
                        vec![
                            "alerting".into(),
                            "receivers".into(),
                            i.into(),
                            "webhook_configs".into(),
                            j.into(),
                            "url".into(),
                        ],
                        format!("webhook url {:?} must be http:// or https://", w.url),
                    ));
                }
            }
        }
        let Some(root) = &a.route else {
            if !a.receivers.is_empty() {
                return Err((
                    vec!["alerting".into(), "route".into()],
                    "receivers are configured but there is no route to them".into(),
                ));
            }
            return Ok(());
        };
        if root.receiver.is_none() {
            return Err((
                vec!["alerting".into(), "route".into(), "receiver".into()],
                "the root route must have a receiver".into(),
            ));
        }
        if !root.matchers.is_empty() || !root.match_eq.is_empty() || !root.match_re.is_empty() {
            return Err((
                vec!["alerting".into(), "route".into(), "matchers".into()],
                "the root route must not have matchers".into(),
            ));
        }
        fn walk(
            r: &RouteConfig,
            path: Vec<Seg>,
            names: &BTreeMap<String, usize>,
        ) -> Result<(), (Vec<Seg>, String)> {
            if let Some(rec) = &r.receiver
                && !names.contains_key(rec)
            {
                let mut p = path.clone();
                p.push("receiver".into());
                return Err((p, format!("undefined receiver {rec:?} used in route")));
            }
            if let Err(m) = r.all_matchers() {
                let mut p = path.clone();
                p.push("match_re".into());
                return Err((p, m));
            }
            for (i, c) in r.routes.iter().enumerate() {
                let mut p = path.clone();
                p.extend(["routes".into(), i.into()]);
                walk(c, p, names)?;
            }
            Ok(())
        }
        walk(root, vec!["alerting".into(), "route".into()], &names)
    }
}

pub(super) fn validate_relabel(
    rules: &[RelabelConfig],
    at: Vec<Seg>,
) -> Result<(), (Vec<Seg>, String)> {
    for (i, r) in rules.iter().enumerate() {
        if let Err(e) = r.validate() {
            let mut p = at.clone();
            p.extend([i.into(), e.key.into()]);
            return Err((p, e.message));
        }
    }
    Ok(())
}

/// Prometheus' `CheckTargetAddress`: an address is `host:port`, not a URL.
pub fn check_target_address(addr: &str) -> Result<(), String> {
    if addr.contains('/') {
        return Err(format!(
            "{addr:?} is not a valid hostname (a target is host:port; put the path in metrics_path)"
        ));
    }
    if addr.is_empty() {
        return Err("empty target address".into());
    }
    Ok(())
}

pub(super) fn valid_file_sd_name(f: &str) -> bool {
    let lower = f.to_ascii_lowercase();
    let ext_ok = [".json", ".yml", ".yaml"]
        .iter()
        .any(|e| lower.ends_with(e));
    // At most one `*`, and only in the last path element.
    let stars = f.matches('*').count();
    let star_ok = stars == 0 || (stars == 1 && !f[f.find('*').unwrap_or(0)..].contains('/'));
    ext_ok && star_ok
}

pub(super) fn check_region_name(r: &str) -> Result<(), String> {
    if r.is_empty()
        || !r
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "region {r:?} must be non-empty and use only letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

pub(super) fn check_storage_url(url: &str) -> Result<(), String> {
    if url.is_empty() {
        return Err("storage URL is empty".into());
    }
    match url.split_once("://") {
        None => Ok(()), // a plain local path
        Some(("file" | "memory", _)) => Ok(()),
        Some(("s3", rest)) => {
            if rest.is_empty() || rest.starts_with('/') {
                Err(format!(
                    "storage URL {url:?} names no bucket (s3://bucket/prefix)"
                ))
            } else {
                Ok(())
            }
        }
        Some((scheme, _)) => Err(format!(
            "unsupported storage URL scheme {scheme:?} in {url:?} (use file://, s3:// or memory://)"
        )),
    }
}
