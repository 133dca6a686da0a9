//! The deployment template (`infra/template.yaml`) passes `cfn-lint` offline, and its functions'
//! environment names only variables the Lambda handlers read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("infra/template.yaml")
}

/// Runs cfn-lint (from the Python scripts/test provides); the test fails when it is missing.
fn cfn_lint(path: &Path) -> Output {
    let py = std::env::var("PROMLAKE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let out = Command::new(&py)
        .args([
            "-c",
            "import sys; from cfnlint.runner import main; sys.argv[0] = 'cfn-lint'; sys.exit(main())",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("running {py}: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'cfnlint'"),
        "{py} has no cfn-lint (scripts/test installs it: pip install cfn-lint)"
    );
    out
}

#[test]
fn the_template_passes_cfn_lint() {
    let out = cfn_lint(&template());
    assert!(
        out.status.success(),
        "cfn-lint infra/template.yaml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn cfn_lint_checks_inside_the_per_shard_loops() {
    // A property the schedule type does not have, inside the nested Fn::ForEach: the linter must
    // expand the loops and reject it, or the passing test above proves nothing.
    let text = std::fs::read_to_string(template()).unwrap();
    let marker =
        "                RetryPolicy: {MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60}\n";
    assert!(
        text.contains(marker),
        "the scrape schedule's retry policy moved"
    );
    let broken = text.replacen(marker, &format!("{marker}                Retries: 3\n"), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("template.yaml");
    std::fs::write(&path, broken).unwrap();
    let out = cfn_lint(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("'Retries' was unexpected"), "{stdout}");
}

#[test]
fn the_template_sets_only_variables_the_handlers_read() {
    let text = std::fs::read_to_string(template()).unwrap();
    let set: BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("PROMLAKE_"))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources: String = [
        "core/src/config/load.rs",
        "functions/scrape/src/lambda.rs",
        "functions/alert/src/lambda.rs",
        "query/src/lambda.rs",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).unwrap())
    .collect();
    for var in &set {
        assert!(
            sources.contains(&format!("env(\"{var}\")")),
            "infra/template.yaml sets {var}, which no handler reads"
        );
    }
    assert!(
        set.contains("PROMLAKE_CONFIG_URL") && set.contains("PROMLAKE_SCRAPE_INTERVAL"),
        "{set:?}"
    );
}

/// `Resources.<name>.Properties...` of the template, tags (`!Ref`, `!Sub`) kept as tagged values.
fn resource(name: &str) -> serde_yaml::Value {
    let text = std::fs::read_to_string(template()).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    doc["Resources"][name].clone()
}

#[test]
fn athena_reads_the_columns_and_partitions_blocks_are_written_with() {
    use arrow::datatypes::DataType;
    let table = &resource("SamplesTable")["Properties"]["TableInput"];
    let hive = |t: &DataType| match t {
        DataType::Utf8 => "string".to_owned(),
        DataType::Dictionary(_, v) if **v == DataType::Utf8 => "string".to_owned(),
        DataType::Float64 => "double".to_owned(),
        DataType::Timestamp(_, _) => "timestamp".to_owned(),
        DataType::Map(f, _) => match f.data_type() {
            DataType::Struct(kv) if kv.iter().all(|f| f.data_type() == &DataType::Utf8) => {
                "map<string,string>".to_owned()
            }
            other => panic!("labels entries are {other:?}"),
        },
        other => format!("{other:?}"),
    };
    let schema = promlake_core::block::schema();
    let columns = table["StorageDescriptor"]["Columns"].as_sequence().unwrap();
    let mut named = Vec::new();
    for c in columns {
        let name = c["Name"].as_str().unwrap();
        let field = schema
            .field_with_name(name)
            .unwrap_or_else(|_| panic!("the Glue column {name} is not in a block"));
        assert_eq!(
            c["Type"].as_str().unwrap(),
            hive(field.data_type()),
            "column {name}"
        );
        named.push(name);
    }
    // Every block column but the unsigned series id (no Athena type reads uint64 as written).
    for f in schema.fields() {
        assert!(
            named.contains(&f.name().as_str()) || f.name() == "series_id",
            "block column {} is missing from the Glue table",
            f.name()
        );
    }

    // The projection's location template is the key layout of blocks.
    let keys: Vec<&str> = table["PartitionKeys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k["Name"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["region", "day", "hour"]);
    let location = format!("{:?}", table["Parameters"]["storage.location.template"]);
    let partition = promlake_core::keys::HourPartition::of("eu1", 1_700_000_000_000).path();
    assert_eq!(
        partition.as_ref(),
        "blocks/region=eu1/day=2023-11-14/hour=22"
    );
    assert!(
        location.contains("/blocks/region=${!region}/day=${!day}/hour=${!hour}/"),
        "{location}"
    );
    let p = &table["Parameters"];
    assert_eq!(p["projection.day.format"].as_str(), Some("yyyy-MM-dd"));
    assert_eq!(p["projection.hour.digits"].as_str(), Some("2"));
    assert_eq!(p["projection.hour.range"].as_str(), Some("0,23"));
}
