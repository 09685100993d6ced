//! The table of every Apache Kafka broker and topic config, generated from
//! Kafka's own definitions: `xtask/java/KafkaConfigs.java` is compiled with
//! the JDK's `javac` against the pinned jars ([`jar::CONFIG_JARS`]) and run;
//! it prints `AbstractKafkaConfig.CONFIG_DEF` and `LogConfig`'s keys as JSON
//! (name, type, default, validator, importance, documentation, dynamic
//! update mode, the broker config a topic config takes its default from),
//! and [`generate`] turns that into `crates/broker/src/kafka_configs/generated.rs`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::jar;

/// The generated file, relative to the repository root.
pub const OUTPUT: &str = "crates/broker/src/kafka_configs/generated.rs";

/// Runs the Java program and returns its JSON.
fn kafka_json(root: &Path) -> Result<Value> {
    let mut classpath = Vec::new();
    for j in jar::CONFIG_JARS {
        classpath.push(j.path()?.display().to_string());
    }
    // Third-party jars (logging, Jackson) from the same distribution.
    classpath.push(format!("{}/*", jar::e2e_libs()?.display()));
    let classpath = classpath.join(":");
    let source = root.join("xtask/java/KafkaConfigs.java");
    let classes = std::env::temp_dir().join(format!("fjord-kafka-configs-{}", std::process::id()));
    std::fs::create_dir_all(&classes)?;
    let result = (|| {
        let out = Command::new("javac")
            .args(["-nowarn", "-d"])
            .arg(&classes)
            .args(["-cp", &classpath])
            .arg(&source)
            .output()
            .context("cannot run javac (a JDK is installed by tests/e2e/setup.sh)")?;
        ensure!(
            out.status.success(),
            "javac {} failed:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("java")
            .arg("-cp")
            .arg(format!("{}:{classpath}", classes.display()))
            .arg("KafkaConfigs")
            .output()
            .context("cannot run java")?;
        ensure!(
            out.status.success(),
            "KafkaConfigs failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).context("KafkaConfigs printed invalid JSON")
    })();
    let _ = std::fs::remove_dir_all(&classes);
    result
}

fn str_field<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    v.get(name)
        .and_then(Value::as_str)
        .with_context(|| format!("field {name} missing in {v}"))
}

fn opt_str(v: &Value, name: &str) -> Option<String> {
    v.get(name).and_then(Value::as_str).map(str::to_owned)
}

fn kind(t: &str) -> Result<&'static str> {
    Ok(match t {
        "BOOLEAN" => "Boolean",
        "STRING" => "String",
        "INT" => "Int",
        "SHORT" => "Short",
        "LONG" => "Long",
        "DOUBLE" => "Double",
        "LIST" => "List",
        "CLASS" => "Class",
        "PASSWORD" => "Password",
        other => bail!("unknown ConfigDef type {other}"),
    })
}

fn strs(v: &Value) -> Result<String> {
    let items = v
        .get("values")
        .and_then(Value::as_array)
        .context("validator values")?;
    let mut out = String::from("&[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write!(out, "{:?}", s.as_str().context("validator value")?)?;
    }
    out.push(']');
    Ok(out)
}

fn bound(v: &Value, name: &str, double: bool) -> Result<String> {
    let Some(text) = v.get(name).and_then(Value::as_str) else {
        return Ok("None".into());
    };
    if double {
        let x: f64 = text
            .parse()
            .with_context(|| format!("range bound {text}"))?;
        Ok(format!("Some({x:?})"))
    } else {
        let n: i64 = match text.parse() {
            Ok(n) => n,
            // A double bound on an integer config: Kafka compares as double.
            Err(_) => text
                .parse::<f64>()
                .with_context(|| format!("range bound {text}"))?
                .ceil() as i64,
        };
        Ok(format!("Some({n})"))
    }
}

fn validator(v: &Value, kind: &str) -> Result<String> {
    if v.is_null() {
        return Ok("Validator::None".into());
    }
    let text = str_field(v, "text")?;
    Ok(match str_field(v, "kind")? {
        "range" if kind == "Double" => format!(
            "Validator::DoubleRange {{ min: {}, max: {} }}",
            bound(v, "min", true)?,
            bound(v, "max", true)?
        ),
        "range" => format!(
            "Validator::IntRange {{ min: {}, max: {} }}",
            bound(v, "min", false)?,
            bound(v, "max", false)?
        ),
        "one_of" => format!("Validator::OneOf({})", strs(v)?),
        "one_of_ignore_case" => format!("Validator::OneOfIgnoreCase({})", strs(v)?),
        "list_of" => format!(
            "Validator::ListOf {{ values: {}, empty_allowed: {} }}",
            strs(v)?,
            v.get("empty_allowed")
                .and_then(Value::as_bool)
                .context("empty_allowed")?
        ),
        "non_empty" => "Validator::NonEmpty".into(),
        _ => format!("Validator::Other({text:?})"),
    })
}

fn entries(out: &mut String, list: &Value) -> Result<usize> {
    let list = list.as_array().context("expected a list of configs")?;
    for c in list {
        let name = str_field(c, "name")?;
        let k = kind(str_field(c, "type")?)?;
        let default = match opt_str(c, "default") {
            Some(d) => format!("Some({d:?})"),
            None => "None".into(),
        };
        let required = c.get("required").and_then(Value::as_bool).unwrap_or(false);
        let importance = match str_field(c, "importance")? {
            "HIGH" => "High",
            "MEDIUM" => "Medium",
            "LOW" => "Low",
            other => bail!("importance {other}"),
        };
        let dynamic = match opt_str(c, "dynamic").as_deref() {
            None => "None",
            Some("read-only") => "Some(DynamicMode::ReadOnly)",
            Some("per-broker") => "Some(DynamicMode::PerBroker)",
            Some("cluster-wide") => "Some(DynamicMode::ClusterWide)",
            Some(other) => bail!("dynamic update mode {other}"),
        };
        let broker_name = match opt_str(c, "broker_name") {
            Some(b) => format!("Some({b:?})"),
            None => "None".into(),
        };
        let internal = c.get("internal").and_then(Value::as_bool).unwrap_or(false);
        let validator = validator(c.get("validator").unwrap_or(&Value::Null), k)?;
        writeln!(
            out,
            "    KafkaConfig {{ name: {name:?}, kind: KafkaType::{k}, default: {default}, required: {required}, importance: Importance::{importance}, dynamic: {dynamic}, broker_name: {broker_name}, internal: {internal}, validator: {validator}, documentation: {:?} }},",
            str_field(c, "documentation")?
        )?;
    }
    Ok(list.len())
}

/// The generated Rust file.
pub fn generate(root: &Path) -> Result<String> {
    let json = kafka_json(root)?;
    let mut out = String::new();
    out.push_str(
        "// @generated by `cargo xtask codegen` from Apache Kafka 4.3.1's config definitions\n",
    );
    out.push_str("// (xtask/java/KafkaConfigs.java). Do not edit: change the generator and run it again.\n\n");
    out.push_str("use super::*;\n\n");
    out.push_str("/// Every broker config of Apache Kafka 4.3.1 (`AbstractKafkaConfig.CONFIG_DEF`), in name order.\n");
    out.push_str("pub const BROKER: &[KafkaConfig] = &[\n");
    let brokers = entries(&mut out, &json["broker"])?;
    out.push_str("];\n\n");
    out.push_str("/// Every topic config of Apache Kafka 4.3.1 (`LogConfig`), in name order.\n");
    out.push_str("pub const TOPIC: &[KafkaConfig] = &[\n");
    let topics = entries(&mut out, &json["topic"])?;
    out.push_str("];\n");
    ensure!(
        brokers > 300 && topics > 30,
        "KafkaConfigs found only {brokers} broker and {topics} topic configs"
    );
    Ok(out)
}
