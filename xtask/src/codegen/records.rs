//! `crates/protocol/src/metadata_records/generated.rs`: our own structs,
//! encoders and checked decoders for the KRaft metadata records
//! (kafka-metadata's `common/metadata/*.json` of type `metadata`) and the
//! KRaft control records, plus the `MetadataRecord` enum.

use std::fmt::Write as _;

use super::emit::{Emit, Mode};
use super::schema::{snake, Field, Schema, Versions};

/// Control records of the KRaft log (kafka-clients' `common/message`).
pub const CONTROL_RECORDS: &[&str] = &[
    "LeaderChangeMessage",
    "SnapshotHeaderRecord",
    "SnapshotFooterRecord",
    "VotersRecord",
    "KRaftVersionRecord",
];

fn field_doc(f: &Field) -> String {
    let mut d = format!("`{}`: versions {}", f.name, f.versions);
    if !f.nullable.is_empty() {
        let _ = write!(d, ", nullable {}", f.nullable);
    }
    if let Some(t) = f.tag {
        let _ = write!(d, ", tag {t} in versions {}", f.tagged);
    }
    if let Some(def) = &f.default {
        let _ = write!(d, ", default {def}");
    }
    if let Some(e) = &f.entity {
        let _ = write!(d, ", entity {e}");
    }
    d
}

fn emit_struct(
    out: &mut String,
    e: &Emit<'_>,
    name: &str,
    fields: &[Field],
    within: Versions,
    top: bool,
) {
    let path = if top {
        name.to_owned()
    } else {
        format!("{}.{name}", e.schema.name)
    };
    let _ = writeln!(
        out,
        "/// Kafka's `{name}` (versions {within}).\n#[derive(Debug, Clone, PartialEq)]\npub struct {name} {{"
    );
    for f in fields {
        let _ = writeln!(
            out,
            "/// {}\npub {}: {},",
            field_doc(f),
            snake(&f.name),
            e.field_type(f)
        );
    }
    let _ = writeln!(
        out,
        "/// Tagged fields this version of the schema does not know, kept as read.\npub unknown_tagged_fields: BTreeMap<i32, Bytes>,\n}}\n"
    );
    let _ = writeln!(
        out,
        "impl Default for {name} {{ fn default() -> Self {{ Self {{"
    );
    for f in fields {
        let _ = writeln!(out, "{}: {},", snake(&f.name), e.default_expr(f));
    }
    let _ = writeln!(out, "unknown_tagged_fields: BTreeMap::new(), }} }} }}\n");
    let _ = writeln!(out, "impl {name} {{");
    if top {
        if let Some(k) = e.schema.api_key {
            let doc = if e.schema.kind == "metadata" {
                "The record's api key in `__cluster_metadata`."
            } else {
                "The api key."
            };
            let _ = writeln!(out, "/// {doc}\npub const API_KEY: i16 = {k};");
        }
        let _ = writeln!(
            out,
            "/// Oldest and newest version of the schema.\npub const VERSIONS: (i16, i16) = ({}, {});",
            within.lo, within.hi
        );
    }
    let check = if top {
        format!(
            "assert!(Self::VERSIONS.0 <= version && version <= Self::VERSIONS.1, \"{name} has no version {{version}}\");\n"
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "/// Writes the body in Kafka's encoding of `version`. Fields the version does not have are not written.\npub fn encode(&self, version: i16, out: &mut BytesMut) {{\n{check}{}}}",
        e.encode_body(fields, within)
    );
    let vcheck = if top {
        format!(
            "if version < Self::VERSIONS.0 || version > Self::VERSIONS.1 {{ return Err(DecodeError::UnsupportedVersion {{ api_key: {}, api_version: version, min: Self::VERSIONS.0, max: Self::VERSIONS.1 }}); }}\n",
            e.schema.api_key.unwrap_or(-1)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "/// Reads the body of `version`, checking every length against the bytes left.\npub fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {{\n{vcheck}let mut m = Self::default();\n{}Ok(m)\n}}\n}}\n",
        e.decode_body(fields, &path, within)
    );
}

pub(super) fn emit_schema(out: &mut String, schema: &Schema) {
    let e = Emit {
        schema,
        mode: Mode::Own,
    };
    let module = snake(&schema.name);
    let _ = writeln!(
        out,
        "/// `{}` and its nested structs.\npub mod {module} {{\nuse super::*;\n",
        schema.name
    );
    emit_struct(out, &e, &schema.name, &schema.fields, schema.valid, true);
    for s in schema.structs.values() {
        let within = s.versions.intersect(schema.valid);
        emit_struct(out, &e, &s.name, &s.fields, within, false);
    }
    let _ = writeln!(out, "}}\npub use {module}::{};\n", schema.name);
}

pub fn generate(metadata: &[Schema], control: &[Schema]) -> String {
    let mut out = String::new();
    out.push_str(super::HEADER);
    out.push_str(
        "#![allow(unused_variables, clippy::derivable_impls, clippy::possible_missing_else)]\n\nuse std::collections::BTreeMap;\n\nuse bytes::{BufMut, Bytes, BytesMut};\nuse uuid::Uuid;\n\nuse crate::reader::{DecodeError, Reader};\nuse crate::writer as w;\n\n",
    );
    for s in metadata.iter().chain(control) {
        emit_schema(&mut out, s);
    }
    let variant = |s: &Schema| s.name.trim_end_matches("Record").to_owned();
    // One line per record type, from `line(variant, struct name)`.
    let each = |line: &dyn Fn(&str, &str) -> String| -> String {
        metadata
            .iter()
            .map(|s| line(&variant(s), &s.name) + "\n")
            .collect()
    };
    let _ = write!(
        out,
        "/// Every KRaft metadata record type, by api key.\n#[derive(Debug, Clone, PartialEq)]\npub enum MetadataRecord {{\n{}}}\n\n",
        each(&|v, n| format!("{v}({n}),"))
    );
    let _ = write!(
        out,
        "impl MetadataRecord {{\n/// The api key that identifies the record type in `__cluster_metadata`.\npub fn api_key(&self) -> i16 {{ match self {{\n{}}} }}\n\n",
        each(&|v, n| format!("MetadataRecord::{v}(_) => {n}::API_KEY,"))
    );
    let _ = write!(
        out,
        "/// The newest version of the record type's schema: the version [`MetadataRecord::encode_framed`] writes.\npub fn version(&self) -> i16 {{ match self {{\n{}}} }}\n\n",
        each(&|v, n| format!("MetadataRecord::{v}(_) => {n}::VERSIONS.1,"))
    );
    let _ = write!(
        out,
        "/// Writes the record body (no frame) in the encoding of `version`.\npub fn encode(&self, version: i16, out: &mut BytesMut) {{ match self {{\n{}}} }}\n\n",
        each(&|v, _| format!("MetadataRecord::{v}(m) => m.encode(version, out),"))
    );
    let _ = write!(
        out,
        "/// Reads the body of a record of type `api_key` and `version`.\npub fn decode(api_key: i16, version: i16, r: &mut Reader) -> Result<Self, DecodeError> {{ match api_key {{\n{}_ => Err(DecodeError::UnsupportedApi {{ api_key }}), }} }}\n}}\n\n",
        each(&|v, n| format!("{n}::API_KEY => {n}::decode(r, version).map(MetadataRecord::{v}),"))
    );
    out.push_str(&each(&|v, n| {
        format!("impl From<{n}> for MetadataRecord {{ fn from(m: {n}) -> Self {{ MetadataRecord::{v}(m) }} }}")
    }));
    out
}
