//! Rust code for one schema: struct definitions, encoders and checked
//! decoders. Two targets share the decoding logic:
//!
//! - [`Mode::Own`]: our own structs (metadata and control records), with
//!   `String` strings and plain integers, an encoder and a decoder.
//! - [`Mode::KafkaProtocol`]: decoders into the `kafka_protocol` crate's
//!   request structs (`StrBytes` strings, entity newtypes such as
//!   `TopicName`), for the versions that crate knows.
//!
//! Every decoder reads through `fjord_protocol::Reader`, whose array reads
//! check `count * minimum element size` against the bytes left before
//! allocating and charge the decoded-size budget.

use std::fmt::Write as _;

use super::schema::{snake, Field, Prim, Schema, StructDef, Ty, Versions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Own,
    KafkaProtocol,
}

/// One schema being emitted.
pub struct Emit<'a> {
    pub schema: &'a Schema,
    pub mode: Mode,
}

fn prim_rust(p: &Prim, mode: Mode) -> &'static str {
    match p {
        Prim::Bool => "bool",
        Prim::Int8 => "i8",
        Prim::Int16 => "i16",
        Prim::Uint16 => "u16",
        Prim::Int32 => "i32",
        Prim::Uint32 => "u32",
        Prim::Int64 => "i64",
        Prim::Float64 => "f64",
        Prim::Uuid => "Uuid",
        Prim::String if mode == Mode::Own => "String",
        Prim::String => "StrBytes",
        Prim::Bytes | Prim::Records => "Bytes",
    }
}

/// Encoded bytes a value of a fixed-width type takes.
fn prim_width(p: &Prim) -> Option<usize> {
    Some(match p {
        Prim::Bool | Prim::Int8 => 1,
        Prim::Int16 | Prim::Uint16 => 2,
        Prim::Int32 | Prim::Uint32 => 4,
        Prim::Int64 | Prim::Float64 => 8,
        Prim::Uuid => 16,
        _ => return None,
    })
}

/// The `kafka_protocol` newtype for an `entityType`, if that crate has one.
pub fn entity_newtype(entity: Option<&str>) -> Option<&'static str> {
    Some(match entity? {
        "brokerId" => "BrokerId",
        "groupId" => "GroupId",
        "producerId" => "ProducerId",
        "topicName" => "TopicName",
        "transactionalId" => "TransactionalId",
        _ => return None,
    })
}

impl Emit<'_> {
    /// The associated function that decodes a struct: our own structs'
    /// `decode`, or the `CheckedDecode::read` we implement for
    /// kafka-protocol's.
    fn decode_fn(&self) -> &'static str {
        match self.mode {
            Mode::Own => "decode",
            Mode::KafkaProtocol => "read",
        }
    }

    fn flexible_in(&self, v: i16) -> bool {
        self.schema.flexible.contains(v)
    }

    fn newtype(&self, f: &Field) -> Option<&'static str> {
        match self.mode {
            Mode::Own => None,
            Mode::KafkaProtocol => entity_newtype(f.entity.as_deref()),
        }
    }

    /// Whether the field's Rust type is an `Option`: nullable in some
    /// version (kafka-protocol: as its struct declares it).
    fn nullable_somewhere(&self, f: &Field) -> bool {
        match (&self.mode, &f.kp_type) {
            (Mode::KafkaProtocol, Some(t)) => t.starts_with("Option<"),
            _ => !f.nullable.intersect(f.versions).is_empty(),
        }
    }

    /// The Rust type of an element (no nullability).
    fn elem_type(&self, ty: &Ty, f: &Field) -> String {
        match ty {
            Ty::Array(inner) => format!("Vec<{}>", self.elem_type(inner, f)),
            Ty::Struct(n) => n.clone(),
            Ty::Prim(p) => match self.newtype(f) {
                Some(n) => n.to_owned(),
                None => prim_rust(p, self.mode).to_owned(),
            },
        }
    }

    pub fn field_type(&self, f: &Field) -> String {
        let t = self.elem_type(&f.ty, f);
        if self.nullable_somewhere(f) || f.ty == Ty::Prim(Prim::Records) {
            format!("Option<{t}>")
        } else {
            t
        }
    }

    /// The schema default of a field as a Rust expression.
    pub fn default_expr(&self, f: &Field) -> String {
        let d = f.default.as_deref();
        let nullable = self.nullable_somewhere(f) || f.ty == Ty::Prim(Prim::Records);
        if nullable && (d == Some("null") || (d.is_none() && f.ty == Ty::Prim(Prim::Records))) {
            return "None".into();
        }
        let inner = match &f.ty {
            Ty::Array(_) => "Vec::new()".to_owned(),
            Ty::Struct(n) => format!("{n}::default()"),
            Ty::Prim(p) => {
                let text = match (p, d) {
                    (Prim::Bool, d) => d.unwrap_or("false").to_owned(),
                    (Prim::Float64, d) => {
                        let v: f64 = d.unwrap_or("0").parse().unwrap_or(0.0);
                        format!("{v:?}")
                    }
                    (Prim::Uuid, _) => "Uuid::nil()".to_owned(),
                    (Prim::String, Some(s)) if !s.is_empty() => match self.mode {
                        Mode::Own => format!("String::from({s:?})"),
                        Mode::KafkaProtocol => format!("StrBytes::from_static_str({s:?})"),
                    },
                    (Prim::String, _) => match self.mode {
                        Mode::Own => "String::new()".to_owned(),
                        Mode::KafkaProtocol => "StrBytes::default()".to_owned(),
                    },
                    (Prim::Bytes | Prim::Records, _) => "Bytes::new()".to_owned(),
                    (_, d) => int_literal(d.unwrap_or("0")),
                };
                match self.newtype(f) {
                    Some(n) => format!("{n}({text})"),
                    None => text,
                }
            }
        };
        if nullable {
            format!("Some({inner})")
        } else {
            inner
        }
    }

    /// Minimum encoded size of a value of `ty` at version `v`.
    fn min_size(&self, ty: &Ty, v: i16) -> usize {
        let flex = self.flexible_in(v);
        match ty {
            Ty::Array(_) => {
                if flex {
                    1
                } else {
                    4
                }
            }
            Ty::Struct(n) => self.struct_min_size(&self.schema.structs[n], v),
            Ty::Prim(p) => match prim_width(p) {
                Some(w) => w,
                None if flex => 1,
                None if *p == Prim::String => 2,
                None => 4,
            },
        }
    }

    fn struct_min_size(&self, s: &StructDef, v: i16) -> usize {
        let fields: usize = s
            .fields
            .iter()
            .filter(|f| f.versions.contains(v) && !is_tagged_at(f, v))
            .map(|f| match &f.ty {
                // A nullable struct may be just its marker byte.
                Ty::Struct(_) if f.nullable.contains(v) => 1,
                ty => self.min_size(ty, v),
            })
            .sum();
        fields + usize::from(self.flexible_in(v))
    }

    /// A Rust expression for the minimum encoded size of an element of
    /// `elem` at the runtime version `version`, for versions in `within`.
    fn min_size_expr(&self, elem: &Ty, within: Versions) -> String {
        let mut runs: Vec<(i16, i16, usize)> = Vec::new();
        for v in within.lo..=within.hi {
            let n = self.min_size(elem, v);
            match runs.last_mut() {
                Some(last) if last.2 == n => last.1 = v,
                _ => runs.push((v, v, n)),
            }
        }
        if runs.len() == 1 {
            return runs[0].2.to_string();
        }
        let mut s = String::from("match version {");
        for (i, (lo, hi, n)) in runs.iter().enumerate() {
            if i + 1 == runs.len() {
                let _ = write!(s, " _ => {n} }}");
            } else if lo == hi {
                let _ = write!(s, " {lo} => {n},");
            } else {
                let _ = write!(s, " {lo}..={hi} => {n},");
            }
        }
        s
    }

    /// Expression decoding one non-null value of element type `ty` (arrays
    /// recurse), reading from `r`.
    fn decode_value(
        &self,
        ty: &Ty,
        f: &Field,
        name: &str,
        within: Versions,
        nullable: bool,
    ) -> String {
        match ty {
            Ty::Array(elem) => {
                let min = self.min_size_expr(elem, within);
                let inner = self.decode_value(elem, f, name, within, false);
                let func = if nullable {
                    "nullable_array_v"
                } else {
                    "array_v"
                };
                let body = match inner.strip_suffix('?') {
                    Some(plain) => plain.to_owned(),
                    _ => format!("Ok({inner})"),
                };
                format!("r.{func}({name:?}, flex, {min}, |r| {body})?")
            }
            Ty::Struct(n) if nullable => format!(
                "r.nullable_struct({name:?}, |r| {n}::{}(r, version))?",
                self.decode_fn()
            ),
            Ty::Struct(n) => format!("{n}::{}(r, version)?", self.decode_fn()),
            Ty::Prim(p) => {
                let read = match p {
                    Prim::Bool => "r.bool(F)?",
                    Prim::Int8 => "r.i8(F)?",
                    Prim::Int16 => "r.i16(F)?",
                    Prim::Uint16 => "r.u16(F)?",
                    Prim::Int32 => "r.i32(F)?",
                    Prim::Uint32 => "r.u32(F)?",
                    Prim::Int64 => "r.i64(F)?",
                    Prim::Float64 => "r.f64(F)?",
                    Prim::Uuid => "r.uuid(F)?",
                    Prim::String => match (self.mode, nullable) {
                        (Mode::Own, false) => "r.string_v(F, flex)?",
                        (Mode::Own, true) => "r.nullable_string_v(F, flex)?",
                        (Mode::KafkaProtocol, false) => "r.str_v(F, flex)?",
                        (Mode::KafkaProtocol, true) => "r.nullable_str_v(F, flex)?",
                    },
                    Prim::Bytes if nullable => "r.nullable_bytes_v(F, flex)?",
                    Prim::Bytes => "r.bytes_v(F, flex)?",
                    Prim::Records => "r.nullable_bytes_v(F, flex)?",
                };
                let read = read.replace('F', &format!("{name:?}"));
                match (self.newtype(f), nullable) {
                    (Some(n), true) => format!("{read}.map({n})"),
                    (Some(n), false) => format!("{n}({read})"),
                    (None, _) => read,
                }
            }
        }
    }

    /// Statement(s) assigning field `f` of `m` from `r` for version range
    /// `within` (where the field is present and not tagged).
    fn decode_field(&self, f: &Field, path: &str, within: Versions) -> String {
        let name = format!("{path}.{}", snake(&f.name));
        let target = format!("m.{}", snake(&f.name));
        let optional = self.nullable_somewhere(f) || f.ty == Ty::Prim(Prim::Records);
        let null_when = f.nullable.intersect(within);
        if !optional || f.ty == Ty::Prim(Prim::Records) {
            return format!(
                "{target} = {};",
                self.decode_value(&f.ty, f, &name, within, optional)
            );
        }
        // kafka-protocol (whose decoding ours must equal) reads a null in
        // every version of a field its struct declares as an `Option`.
        let lenient = self.mode == Mode::KafkaProtocol;
        if lenient || (null_when.covers(within) && !null_when.is_empty()) {
            return format!(
                "{target} = {};",
                self.decode_value(&f.ty, f, &name, within, true)
            );
        }
        let non_null = self.decode_value(&f.ty, f, &name, within, false);
        match f.nullable.cond("version", within) {
            Some(c) if c != "false" => format!(
                "{target} = if {c} {{ {} }} else {{ Some({non_null}) }};",
                self.decode_value(&f.ty, f, &name, within, true)
            ),
            _ => format!("{target} = Some({non_null});"),
        }
    }

    /// `let flex = ...;`: whether the runtime `version` is flexible.
    fn flex_stmt(&self, within: Versions) -> String {
        let cond = self.schema.flexible.cond("version", within);
        format!("let flex = {};\n", cond.as_deref().unwrap_or("true"))
    }

    /// The body of a decode function for a struct with `fields`, valid in
    /// `within`; `m` starts as the default value.
    pub fn decode_body(&self, fields: &[Field], path: &str, within: Versions) -> String {
        let mut s = self.flex_stmt(within);
        for f in fields {
            let present = f.versions.intersect(within);
            if present.is_empty() {
                continue;
            }
            // Versions where the field is a regular (not tagged) field.
            let regular = untagged_range(f, present);
            if regular.is_empty() {
                continue;
            }
            let stmt = self.decode_field(f, path, regular);
            match versions_cond(f, present, within, regular) {
                None => {
                    let _ = writeln!(s, "{stmt}");
                }
                Some(c) => {
                    let _ = writeln!(s, "if {c} {{ {stmt} }}");
                }
            }
        }
        let tagged: Vec<&Field> = fields
            .iter()
            .filter(|f| {
                f.tag.is_some() && !f.tagged.intersect(f.versions).intersect(within).is_empty()
            })
            .collect();
        let tags_name = format!("{path}.tagged_fields");
        if self.schema.flexible.intersect(within).is_empty() {
            return s;
        }
        let read = if tagged.is_empty() {
            format!("r.unknown_tagged_fields({tags_name:?})?")
        } else {
            let mut arms = String::new();
            for f in &tagged {
                let tv = f.tagged.intersect(f.versions).intersect(within);
                let guard = match tv.cond("version", within) {
                    None => String::new(),
                    Some(c) => format!(" if {c}"),
                };
                let stmt = self.decode_field(f, path, tv);
                let _ = writeln!(arms, "{}{guard} => {{ {stmt} }}", f.tag.unwrap_or_default());
            }
            format!(
                "r.tagged_fields({tags_name:?}, |tag, r| {{ match tag {{ {arms} _ => return Ok(false), }} Ok(true) }})?"
            )
        };
        let _ = writeln!(s, "if flex {{ m.unknown_tagged_fields = {read}; }}");
        s
    }

    // ---- encoding (own structs only) ----

    fn encode_value(&self, ty: &Ty, value: &str, nullable: bool) -> String {
        match ty {
            Ty::Array(elem) => {
                let inner = self.encode_value(elem, "e", false);
                let func = if nullable {
                    "put_nullable_array"
                } else {
                    "put_array"
                };
                let arg = if nullable {
                    format!("{value}.as_deref()")
                } else {
                    format!("&{value}")
                };
                format!("w::{func}(out, {arg}, flex, |out, e| {{ {inner} }});")
            }
            Ty::Struct(_) if nullable => format!(
                "w::put_nullable_struct(out, {value}.as_ref(), |out, e| e.encode(version, out));"
            ),
            Ty::Struct(_) => format!("{value}.encode(version, out);"),
            Ty::Prim(p) => {
                let deref = if value == "e" {
                    "*e".to_owned()
                } else {
                    value.to_owned()
                };
                match p {
                    Prim::Bool => format!("out.put_u8(u8::from({deref}));"),
                    Prim::Int8 => format!("out.put_i8({deref});"),
                    Prim::Int16 => format!("out.put_i16({deref});"),
                    Prim::Uint16 => format!("out.put_u16({deref});"),
                    Prim::Int32 => format!("out.put_i32({deref});"),
                    Prim::Uint32 => format!("out.put_u32({deref});"),
                    Prim::Int64 => format!("out.put_i64({deref});"),
                    Prim::Float64 => format!("out.put_f64({deref});"),
                    Prim::Uuid => format!("out.put_slice({value}.as_bytes());"),
                    Prim::String if nullable => {
                        format!("w::put_nullable_str(out, {value}.as_deref(), flex);")
                    }
                    Prim::String => format!("w::put_str(out, {value}, flex);"),
                    Prim::Bytes | Prim::Records if nullable => {
                        format!("w::put_nullable_bytes(out, {value}.as_deref(), flex);")
                    }
                    Prim::Bytes | Prim::Records => format!("w::put_bytes(out, {value}, flex);"),
                }
            }
        }
    }

    fn encode_field(&self, f: &Field, within: Versions) -> String {
        let value = format!("self.{}", snake(&f.name));
        let optional = self.nullable_somewhere(f);
        if !optional {
            let v = match &f.ty {
                Ty::Prim(Prim::String | Prim::Bytes) => format!("&{value}"),
                _ => value,
            };
            return self.encode_value(&f.ty, &v, false);
        }
        let null_when = f.nullable.intersect(within);
        if null_when.covers(within) && !null_when.is_empty() {
            return self.encode_value(&f.ty, &value, true);
        }
        // Not nullable in (some of) these versions: a None is written as
        // the empty value, as an absent value cannot be expressed.
        let non_null = match &f.ty {
            Ty::Array(_) => self
                .encode_value(
                    &f.ty,
                    &format!("{value}.as_deref().unwrap_or_default()"),
                    false,
                )
                .replace("&self", "self"),
            Ty::Prim(Prim::String) => self.encode_value(
                &f.ty,
                &format!("{value}.as_deref().unwrap_or_default()"),
                false,
            ),
            Ty::Prim(Prim::Bytes) => self.encode_value(
                &f.ty,
                &format!("{value}.as_deref().unwrap_or_default()"),
                false,
            ),
            _ => self.encode_value(&f.ty, &value, true),
        };
        match f.nullable.cond("version", within) {
            Some(c) if c != "false" => format!(
                "if {c} {{ {} }} else {{ {non_null} }}",
                self.encode_value(&f.ty, &value, true)
            ),
            _ => non_null,
        }
    }

    /// Condition under which a tagged field differs from its default (and
    /// so is written, as Kafka writes only non-default tagged fields).
    fn non_default(&self, f: &Field) -> String {
        let value = format!("self.{}", snake(&f.name));
        let optional = self.nullable_somewhere(f);
        let d = f.default.as_deref();
        if optional && d == Some("null") {
            return format!("{value}.is_some()");
        }
        match &f.ty {
            Ty::Array(_) if optional => format!("{value}.as_ref().is_some_and(|v| !v.is_empty())"),
            Ty::Array(_) => format!("!{value}.is_empty()"),
            Ty::Prim(Prim::Uuid) => format!("!{value}.is_nil()"),
            Ty::Prim(Prim::String | Prim::Bytes) if !optional && d.is_none_or(str::is_empty) => {
                format!("!{value}.is_empty()")
            }
            _ => format!("{value} != {}", self.default_expr(f)),
        }
    }

    pub fn encode_body(&self, fields: &[Field], within: Versions) -> String {
        let mut s = self.flex_stmt(within);
        for f in fields {
            let present = f.versions.intersect(within);
            let regular = untagged_range(f, present);
            if regular.is_empty() {
                continue;
            }
            let stmt = self.encode_field(f, regular);
            match versions_cond(f, present, within, regular) {
                None => {
                    let _ = writeln!(s, "{stmt}");
                }
                Some(c) => {
                    let _ = writeln!(s, "if {c} {{ {stmt} }}");
                }
            }
        }
        if self.schema.flexible.intersect(within).is_empty() {
            return s;
        }
        let mut tagged = String::new();
        let mut tagged_fields: Vec<&Field> = fields
            .iter()
            .filter(|f| {
                f.tag.is_some() && !f.tagged.intersect(f.versions).intersect(within).is_empty()
            })
            .collect();
        tagged_fields.sort_by_key(|f| f.tag);
        for f in tagged_fields {
            let tv = f.tagged.intersect(f.versions).intersect(within);
            let mut cond = self.non_default(f);
            if let Some(c) = tv.cond("version", within) {
                cond = format!("{c} && {cond}");
            }
            let stmt = self.encode_field(f, tv);
            let _ = writeln!(
                tagged,
                "if {cond} {{ let out = tagged.field({}); {stmt} }}",
                f.tag.unwrap_or_default()
            );
        }
        if tagged.is_empty() {
            let _ = writeln!(
                s,
                "if flex {{ w::put_tagged_fields(out, w::TaggedFields::default(), &self.unknown_tagged_fields); }}"
            );
        } else {
            let _ = writeln!(
                s,
                "if flex {{ let mut tagged = w::TaggedFields::default(); {tagged} w::put_tagged_fields(out, tagged, &self.unknown_tagged_fields); }}"
            );
        }
        s
    }
}

fn is_tagged_at(f: &Field, v: i16) -> bool {
    f.tag.is_some() && f.tagged.contains(v)
}

/// The part of `present` where `f` is a regular field. Kafka's schemas tag
/// a field in a suffix of its versions (usually all of them).
fn untagged_range(f: &Field, present: Versions) -> Versions {
    if f.tag.is_none() || f.tagged.intersect(present).is_empty() {
        return present;
    }
    if f.tagged.covers(present) {
        return Versions::NONE;
    }
    Versions {
        lo: present.lo,
        hi: f.tagged.lo - 1,
    }
    .intersect(present)
}

fn versions_cond(
    _f: &Field,
    _present: Versions,
    within: Versions,
    regular: Versions,
) -> Option<String> {
    regular.cond("version", within)
}

fn int_literal(text: &str) -> String {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return format!("0x{hex}");
    }
    t.to_owned()
}
