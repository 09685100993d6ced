//! The message schema model: Kafka's JSON message definitions (`name`,
//! `validVersions`, `flexibleVersions`, `fields` with `versions`,
//! `nullableVersions`, `taggedVersions`, `tag`, `default`, `entityType`,
//! nested `fields` and `commonStructs`).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// An inclusive version range; `lo > hi` is the empty range ("none").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub lo: i16,
    pub hi: i16,
}

impl Versions {
    pub const NONE: Versions = Versions { lo: 1, hi: 0 };

    pub fn parse(s: &str) -> Result<Versions> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(Versions::NONE);
        }
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Versions {
                lo: lo.parse()?,
                hi: i16::MAX,
            });
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Versions {
                lo: lo.parse()?,
                hi: hi.parse()?,
            });
        }
        let v = s.parse()?;
        Ok(Versions { lo: v, hi: v })
    }

    pub fn is_empty(self) -> bool {
        self.lo > self.hi
    }

    pub fn contains(self, v: i16) -> bool {
        self.lo <= v && v <= self.hi
    }

    pub fn intersect(self, o: Versions) -> Versions {
        Versions {
            lo: self.lo.max(o.lo),
            hi: self.hi.min(o.hi),
        }
    }

    /// Whether every version of `within` is in `self`.
    pub fn covers(self, within: Versions) -> bool {
        within.is_empty() || (self.lo <= within.lo && within.hi <= self.hi)
    }

    /// A Rust condition on `v` for "v is in self", simplified knowing that
    /// `v` lies in `within`; `None` means always true.
    pub fn cond(self, var: &str, within: Versions) -> Option<String> {
        let r = self.intersect(within);
        if r.is_empty() {
            return Some("false".into());
        }
        let lo = r.lo > within.lo;
        let hi = r.hi < within.hi;
        match (lo, hi) {
            (false, false) => None,
            (true, false) => Some(format!("{var} >= {}", r.lo)),
            (false, true) => Some(format!("{var} <= {}", r.hi)),
            (true, true) if r.lo == r.hi => Some(format!("{var} == {}", r.lo)),
            (true, true) => Some(format!("({}..={}).contains(&{var})", r.lo, r.hi)),
        }
    }
}

impl std::fmt::Display for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            write!(f, "none")
        } else if self.hi == i16::MAX {
            write!(f, "{}+", self.lo)
        } else if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prim {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    Records,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Prim(Prim),
    Struct(String),
    Array(Box<Ty>),
}

impl Ty {
    fn parse(s: &str) -> Ty {
        if let Some(inner) = s.strip_prefix("[]") {
            return Ty::Array(Box::new(Ty::parse(inner)));
        }
        let p = match s {
            "bool" => Prim::Bool,
            "int8" => Prim::Int8,
            "int16" => Prim::Int16,
            "uint16" => Prim::Uint16,
            "int32" => Prim::Int32,
            "uint32" => Prim::Uint32,
            "int64" => Prim::Int64,
            "float64" => Prim::Float64,
            "uuid" => Prim::Uuid,
            "string" => Prim::String,
            "bytes" => Prim::Bytes,
            "records" => Prim::Records,
            other => return Ty::Struct(other.to_owned()),
        };
        Ty::Prim(p)
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub versions: Versions,
    pub nullable: Versions,
    pub tagged: Versions,
    pub tag: Option<u32>,
    pub default: Option<String>,
    pub entity: Option<String>,
    /// Fields of the struct type when this field defines it inline.
    pub fields: Vec<Field>,
    /// The Rust type kafka-protocol declares for this field (request
    /// decoders only): decides `Option` and entity newtypes.
    pub kp_type: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StructDef {
    pub name: String,
    pub versions: Versions,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Versions,
    pub flexible: Versions,
    pub fields: Vec<Field>,
    /// Every struct type used in this schema (inline and common), by name.
    pub structs: BTreeMap<String, StructDef>,
}

/// Removes `//` comments outside string literals (Kafka's schema files carry
/// a license header and notes as comments, which JSON does not allow).
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for skipped in chars.by_ref() {
                if skipped == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn versions_of(v: &Value, key: &str) -> Result<Versions> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) => Versions::parse(s).with_context(|| format!("{key}: {s}")),
        None => Ok(Versions::NONE),
    }
}

fn parse_fields(
    list: Option<&Value>,
    within: Versions,
    structs: &mut BTreeMap<String, StructDef>,
) -> Result<Vec<Field>> {
    let mut out = Vec::new();
    for f in list.and_then(Value::as_array).into_iter().flatten() {
        let name = str_of(f, "name").context("field without a name")?;
        let ty_text = str_of(f, "type").with_context(|| format!("{name}: no type"))?;
        let versions = versions_of(f, "versions").with_context(|| name.clone())?;
        let tag = match f.get("tag") {
            Some(t) => Some(
                t.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .with_context(|| format!("{name}: bad tag"))?,
            ),
            None => None,
        };
        let default = match f.get("default") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let ty = Ty::parse(&ty_text);
        let field_versions = versions.intersect(within);
        let fields = parse_fields(f.get("fields"), field_versions, structs)?;
        if !fields.is_empty() {
            let struct_name = ty_text.trim_start_matches("[]").to_owned();
            structs.insert(
                struct_name.clone(),
                StructDef {
                    name: struct_name,
                    versions: field_versions,
                    fields: fields.clone(),
                },
            );
        }
        out.push(Field {
            name: name.clone(),
            ty,
            versions,
            nullable: versions_of(f, "nullableVersions")?,
            tagged: versions_of(f, "taggedVersions")?,
            tag,
            default,
            entity: str_of(f, "entityType"),
            fields,
            kp_type: None,
        });
    }
    Ok(out)
}

impl Schema {
    pub fn parse(text: &str) -> Result<Schema> {
        let v: Value = serde_json::from_str(&strip_comments(text))?;
        let name = str_of(&v, "name").context("schema without a name")?;
        let valid = versions_of(&v, "validVersions")?;
        let mut structs = BTreeMap::new();
        for c in v
            .get("commonStructs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let cname = str_of(c, "name").context("common struct without a name")?;
            let cversions = match c.get("versions") {
                Some(_) => versions_of(c, "versions")?,
                None => valid,
            };
            let fields = parse_fields(c.get("fields"), cversions, &mut structs)?;
            structs.insert(
                cname.clone(),
                StructDef {
                    name: cname,
                    versions: cversions,
                    fields,
                },
            );
        }
        let fields = parse_fields(v.get("fields"), valid, &mut structs)
            .with_context(|| format!("schema {name}"))?;
        let schema = Schema {
            kind: str_of(&v, "type").unwrap_or_default(),
            api_key: v
                .get("apiKey")
                .and_then(Value::as_i64)
                .and_then(|k| i16::try_from(k).ok()),
            valid,
            flexible: versions_of(&v, "flexibleVersions")?,
            fields,
            structs,
            name,
        };
        schema.check()?;
        Ok(schema)
    }

    /// Fails on constructs the generator does not handle, so a new Kafka
    /// release cannot silently produce wrong code.
    fn check(&self) -> Result<()> {
        fn walk(s: &Schema, fields: &[Field]) -> Result<()> {
            for f in fields {
                if let Some(t) = f.tag {
                    if f.tagged.is_empty() {
                        bail!("{}.{}: tag {t} without taggedVersions", s.name, f.name);
                    }
                    if !s.flexible.covers(f.tagged) {
                        bail!("{}.{}: tagged in non-flexible versions", s.name, f.name);
                    }
                } else if !f.tagged.is_empty() {
                    bail!("{}.{}: taggedVersions without a tag", s.name, f.name);
                }
                let mut ty = &f.ty;
                while let Ty::Array(inner) = ty {
                    ty = inner;
                }
                if let Ty::Struct(n) = ty {
                    if !s.structs.contains_key(n) {
                        bail!("{}.{}: unknown struct type {n}", s.name, f.name);
                    }
                }
                walk(s, &f.fields)?;
            }
            Ok(())
        }
        walk(self, &self.fields)
    }
}

/// `IsMigratingZkBroker` -> `is_migrating_zk_broker`; a run of capitals is
/// one word (`ISR` -> `isr`, `IPAddress` -> `ip_address`).
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower =
                i > 0 && (chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    match out.as_str() {
        "type" | "match" | "mod" | "ref" | "self" | "struct" | "enum" | "fn" | "impl" | "in"
        | "loop" | "move" | "use" | "where" | "async" | "await" | "dyn" => format!("_{out}"),
        _ => out,
    }
}
