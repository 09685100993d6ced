//! `crates/protocol/src/requests/generated.rs`: checked decoders for the
//! request bodies the broker serves, producing the `kafka_protocol` crate's
//! request structs, for every version that crate knows.
//!
//! To decode one more request, add its name to [`REQUESTS`] and run
//! `cargo xtask codegen`: the generated file then also lists it in the
//! `Request` enum, `SUPPORTED_APIS` and `decode_request`.
//!
//! The field layout comes from Kafka 4.3.1's schema; which versions exist,
//! which fields are `Option`s and which are entity newtypes (`TopicName`,
//! `BrokerId`, ...) is read from kafka-protocol's own source (located with
//! `cargo metadata`), and every field the schema has in those versions must
//! exist in kafka-protocol's struct, or generation fails naming it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use super::emit::{Emit, Mode};
use super::schema::{snake, Field, Schema, Ty, Versions};

/// The requests we decode: `(API name, newest version)`. The newest version
/// is kafka-protocol's (`None`) unless a newer one has the same request and
/// response layout as kafka-protocol's newest (only the meaning of values
/// changed), in which case we decode it too and kafka-protocol encodes it as
/// its newest: ListOffsets v11 only allows a new timestamp value (-6,
/// earliest pending upload); DescribeLogDirs v5's request equals v4 (its
/// response adds `is_cordoned`, which the broker's handler encodes itself);
/// BrokerHeartbeat v2 adds only a tagged field (`CordonedLogDirs`, kept
/// among the unknown tagged fields) and its response equals v0's.
pub const REQUESTS: &[(&str, Option<i16>)] = &[
    ("ApiVersions", None),
    ("Metadata", None),
    ("Produce", None),
    ("Fetch", None),
    ("ListOffsets", Some(11)),
    ("CreateTopics", None),
    ("DeleteTopics", None),
    ("CreatePartitions", None),
    ("DeleteRecords", None),
    ("DescribeCluster", None),
    ("DescribeConfigs", None),
    ("AlterConfigs", None),
    ("IncrementalAlterConfigs", None),
    ("DescribeLogDirs", Some(5)),
    ("AlterReplicaLogDirs", None),
    ("ElectLeaders", None),
    ("DescribeQuorum", None),
    ("AlterPartitionReassignments", None),
    ("ListPartitionReassignments", None),
    ("DescribeTopicPartitions", None),
    ("ListConfigResources", None),
    ("InitProducerId", None),
    ("FindCoordinator", None),
    ("JoinGroup", None),
    ("SyncGroup", None),
    ("Heartbeat", None),
    ("LeaveGroup", None),
    ("OffsetCommit", None),
    ("OffsetFetch", None),
    ("ListGroups", None),
    ("DescribeGroups", None),
    ("DeleteGroups", None),
    ("OffsetDelete", None),
    ("Vote", None),
    ("BeginQuorumEpoch", None),
    ("EndQuorumEpoch", None),
    ("AddRaftVoter", None),
    ("RemoveRaftVoter", None),
    ("OffsetForLeaderEpoch", None),
    ("DescribeProducers", None),
    ("DescribeAcls", None),
    ("CreateAcls", None),
    ("DeleteAcls", None),
    ("ListTransactions", None),
    ("DescribeTransactions", None),
    ("AddPartitionsToTxn", None),
    ("AddOffsetsToTxn", None),
    ("EndTxn", None),
    ("TxnOffsetCommit", None),
    ("WriteTxnMarkers", None),
    ("BrokerRegistration", None),
    ("BrokerHeartbeat", Some(2)),
    ("AllocateProducerIds", None),
    ("AlterPartition", None),
    ("UpdateFeatures", None),
    ("SaslHandshake", None),
    ("SaslAuthenticate", None),
    ("DescribeUserScramCredentials", None),
    ("AlterUserScramCredentials", None),
    ("DescribeClientQuotas", None),
    ("AlterClientQuotas", None),
];

/// Requests decoded past kafka-protocol's newest version where the layout
/// changes but kafka-protocol's struct already has every field of the newer
/// versions (it declares them with no supported version): `(API name, newest
/// version we decode)`. The decoders read them from Kafka's schema like any
/// other version; kafka-protocol cannot encode them, so `Request::encode`
/// writes them with the hand-written encoders of `requests/newer.rs`.
/// OffsetCommit and OffsetFetch v10 name topics by id instead of by name.
pub const NEWER_LAYOUTS: &[(&str, i16)] = &[("OffsetCommit", 10), ("OffsetFetch", 10)];

/// Requests of `REQUESTS` whose newer versions add fields kafka-protocol 0.18's
/// structs do not have: Fjord owns their request and response structs
/// (`Mode::Own`: encoders and checked decoders for every version in Kafka's
/// schema, in the `own` module of the generated file, with kafka-protocol's
/// message traits implemented in `requests/own.rs`). WriteTxnMarkers v2 adds
/// each marker's `TransactionVersion` (KIP-1228).
pub const OWN_REQUESTS: &[&str] = &["WriteTxnMarkers"];

/// The `src/messages` directory of the kafka-protocol the workspace uses.
fn kafka_protocol_messages(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pkg = v["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "kafka-protocol")
        .context("kafka-protocol is not a dependency")?;
    let manifest = PathBuf::from(pkg["manifest_path"].as_str().context("manifest_path")?);
    let dir = manifest
        .parent()
        .context("manifest dir")?
        .join("src/messages");
    Ok(dir)
}

/// What kafka-protocol's generated module for one message declares.
struct KpModule {
    min: i16,
    max: i16,
    /// struct name -> field name -> Rust type.
    structs: BTreeMap<String, BTreeMap<String, String>>,
}

fn parse_kp_module(text: &str) -> Result<KpModule> {
    let at = text
        .find("VersionRange { min: ")
        .context("no VersionRange")?;
    let rest = &text[at + "VersionRange { min: ".len()..];
    let (min, rest) = rest.split_once(", max: ").context("VersionRange")?;
    let (max, _) = rest.split_once(' ').context("VersionRange")?;
    let mut structs = BTreeMap::new();
    let mut current: Option<(String, BTreeMap<String, String>)> = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("pub struct ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            current = Some((name.to_owned(), BTreeMap::new()));
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                structs.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut() {
            if let Some((field, ty)) = line
                .trim()
                .strip_prefix("pub ")
                .and_then(|l| l.strip_suffix(','))
                .and_then(|l| l.split_once(": "))
            {
                fields.insert(field.to_owned(), ty.to_owned());
            }
        }
    }
    Ok(KpModule {
        min: min.trim().parse()?,
        max: max.trim().parse()?,
        structs,
    })
}

/// Sets `kp_type` on every field present in `within`, checking that
/// kafka-protocol's struct has it with a matching entity newtype.
fn annotate(
    schema: &str,
    struct_name: &str,
    fields: &mut [Field],
    within: Versions,
    kp: &KpModule,
) -> Result<()> {
    let kp_fields = kp
        .structs
        .get(struct_name)
        .with_context(|| format!("{schema}: kafka-protocol has no struct {struct_name}"))?;
    for f in fields.iter_mut() {
        if f.versions.intersect(within).is_empty() {
            continue;
        }
        let name = snake(&f.name);
        let ty = kp_fields.get(&name).with_context(|| {
            format!(
                "{schema}: kafka-protocol's {struct_name} has no field {name} (versions {})",
                f.versions
            )
        })?;
        let entity = super::emit::entity_newtype(f.entity.as_deref());
        let mut elem = &f.ty;
        while let Ty::Array(inner) = elem {
            elem = inner;
        }
        if matches!(elem, Ty::Prim(_)) && entity.is_some() != ty.contains("super::") {
            bail!("{schema}: {struct_name}.{name} is {ty} in kafka-protocol but entity {:?} in the schema", f.entity);
        }
        f.kp_type = Some(ty.clone());
    }
    Ok(())
}

struct Api {
    name: &'static str,
    schema: Schema,
    within: Versions,
    kp_max: i16,
}

fn emit_api(out: &mut String, api: &Api) {
    let e = Emit {
        schema: &api.schema,
        mode: Mode::KafkaProtocol,
    };
    let top = format!("{}Request", api.name);
    let mut bodies = vec![(top.clone(), api.schema.fields.clone(), api.within)];
    for s in api.schema.structs.values() {
        let within = s.versions.intersect(api.within);
        if !within.is_empty() {
            bodies.push((s.name.clone(), s.fields.clone(), within));
        }
    }
    // The request struct itself is in `kafka_protocol::messages`; nested
    // structs only in the message's module.
    let nested = if bodies.len() > 1 {
        format!("use kafka_protocol::messages::{}::*;\n", snake(&top))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "/// `{top}`, versions {}.\nmod {} {{\nuse super::*;\n{nested}",
        api.within,
        snake(api.name),
    );
    for (name, fields, within) in bodies {
        let path = if name == top {
            api.name.to_owned()
        } else {
            format!("{}.{name}", api.name)
        };
        let _ = writeln!(
            out,
            "impl CheckedDecode for {name} {{\nfn read(r: &mut Reader, version: i16) -> Result<Self, DecodeError> {{\nlet mut m = Self::default();\n{}Ok(m)\n}}\n}}\n",
            e.decode_body(&fields, &path, within)
        );
    }
    let _ = writeln!(out, "}}\n");
}

pub fn generate(root: &Path, messages: &[Schema]) -> Result<String> {
    let kp_dir = kafka_protocol_messages(root)?;
    let mut apis = Vec::new();
    for (name, newest) in REQUESTS {
        if OWN_REQUESTS.contains(name) {
            ensure!(newest.is_none(), "{name} is both owned and a layout alias");
            continue;
        }
        let schema_name = format!("{name}Request");
        let mut schema = messages
            .iter()
            .find(|s| s.name == schema_name)
            .with_context(|| format!("no schema {schema_name}"))?
            .clone();
        let file = kp_dir.join(format!("{}.rs", snake(&schema_name)));
        let kp = parse_kp_module(
            &std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| file.display().to_string())?;
        let newer = NEWER_LAYOUTS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v);
        ensure!(
            newest.is_none() || newer.is_none(),
            "{name} is both a layout alias and a newer layout"
        );
        let within = Versions {
            lo: kp.min,
            hi: newest.or(newer).unwrap_or(kp.max).max(kp.max),
        };
        ensure!(
            schema.valid.covers(within),
            "{schema_name}: versions {within} are not all in Kafka's {}",
            schema.valid
        );
        if newest.is_some() {
            // A tagged field newer than kafka-protocol's struct does not
            // change the layout: the decoder keeps it among the unknown
            // tagged fields (BrokerHeartbeat v2's CordonedLogDirs).
            let known = kp.structs.get(&schema_name);
            schema.fields.retain(|f| {
                let new_tagged = f.tag.is_some() && f.versions.lo > kp.max;
                !new_tagged || known.is_some_and(|k| k.contains_key(&snake(&f.name)))
            });
        }
        annotate(&schema_name, &schema_name, &mut schema.fields, within, &kp)?;
        let names: Vec<String> = schema.structs.keys().cloned().collect();
        for n in names {
            let s = schema.structs.get_mut(&n).context("struct")?;
            let sw = s.versions.intersect(within);
            if !sw.is_empty() {
                annotate(&schema_name, &n, &mut s.fields, sw, &kp)?;
            }
        }
        // Inline struct fields of the top level were copied into
        // `structs`; the copies there are what the decoders use.
        apis.push(Api {
            name,
            schema,
            within,
            kp_max: kp.max,
        });
    }

    let mut out = String::new();
    out.push_str(super::HEADER);
    out.push_str("#![allow(unused_variables, clippy::possible_missing_else)]\n\nuse super::*;\n\n");
    let mut owned = Vec::new();
    for name in OWN_REQUESTS {
        let find = |suffix: &str| {
            let schema_name = format!("{name}{suffix}");
            messages
                .iter()
                .find(|s| s.name == schema_name)
                .cloned()
                .with_context(|| format!("no schema {schema_name}"))
        };
        owned.push((*name, find("Request")?, find("Response")?));
    }
    out.push_str("apis! {\n");
    for (name, _) in REQUESTS {
        let flexible = |s: &Schema| {
            if s.flexible.is_empty() {
                i16::MAX
            } else {
                s.flexible.lo
            }
        };
        if let Some((_, request, _)) = owned.iter().find(|(n, _, _)| n == name) {
            let _ = writeln!(
                out,
                "{name}(own::{name}Request) = {name}, flexible >= {};",
                flexible(request)
            );
        } else if let Some(api) = apis.iter().find(|a| a.name == *name) {
            let _ = writeln!(
                out,
                "{n}({n}Request) = {n}, flexible >= {};",
                flexible(&api.schema),
                n = api.name
            );
        }
    }
    out.push_str("}\n\n");
    out.push_str("/// Versions newer than kafka-protocol knows whose request and response\n/// layouts equal the newest version it knows: `(api, newest version we decode)`\n/// (see `REQUESTS` in xtask/src/codegen/requests.rs for why each is listed).\npub(crate) const LAYOUT_ALIASES: &[(ApiKey, i16)] = &[");
    let newer = |name: &str| NEWER_LAYOUTS.iter().any(|(n, _)| *n == name);
    for api in &apis {
        if api.within.hi > api.kp_max && !newer(api.name) {
            let _ = write!(out, "(ApiKey::{}, {}),", api.name, api.within.hi);
        }
    }
    out.push_str("];\n\n");
    out.push_str("/// Versions newer than kafka-protocol knows with a layout of their own,\n/// decoded here and encoded by `requests/newer.rs`: `(api, newest version we\n/// decode)` (see `NEWER_LAYOUTS` in xtask/src/codegen/requests.rs).\npub(crate) const NEWER_LAYOUTS: &[(ApiKey, i16)] = &[");
    for api in &apis {
        if api.within.hi > api.kp_max && newer(api.name) {
            let _ = write!(out, "(ApiKey::{}, {}),", api.name, api.within.hi);
        }
    }
    out.push_str("];\n\n");
    for api in &apis {
        emit_api(&mut out, api);
    }
    out.push_str("/// Request and response structs Fjord owns (`OWN_REQUESTS` in\n/// xtask/src/codegen/requests.rs): every version of Kafka's schema, with\n/// encoders and checked decoders.\npub mod own {\n#![allow(clippy::derivable_impls)]\nuse std::collections::BTreeMap;\n\nuse bytes::{BufMut, Bytes, BytesMut};\n\nuse crate::reader::{DecodeError, Reader};\nuse crate::writer as w;\n\n");
    for (_, request, response) in &owned {
        super::records::emit_schema(&mut out, request);
        super::records::emit_schema(&mut out, response);
    }
    out.push_str("}\n");
    Ok(out)
}
