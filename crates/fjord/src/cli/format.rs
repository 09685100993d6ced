//! How `fjord consume` prints a record: the value, key and value, JSON with
//! metadata, or a user template; bytes that are not UTF-8 are escaped
//! (`\xNN`) or base64-encoded.

use std::io::Write;

use anyhow::Result;
use serde_json::json;

use super::usage;

/// A record as printed.
pub struct Rec<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// What to do with bytes that are not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Binary {
    /// Print each byte that is not part of valid UTF-8 as `\xNN`.
    Escape,
    /// Print the whole key or value as standard base64.
    Base64,
}

/// The fields a template may name.
pub const TEMPLATE_FIELDS: &[&str] = &[
    "topic",
    "partition",
    "offset",
    "timestamp",
    "key",
    "value",
    "headers",
];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(usize),
}

/// A parsed `--template`: text with `{field}` placeholders; `{{` and `}}`
/// are literal braces, `\n` and `\t` a newline and a tab. Each record's
/// output ends with a newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; an unknown field or an unclosed brace is a usage error.
    pub fn parse(s: &str) -> Result<Template> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(usage(format!(
                            "template: '{{{name}' is not closed with '}}'"
                        )));
                    }
                    let Some(i) = TEMPLATE_FIELDS.iter().position(|f| *f == name) else {
                        return Err(usage(format!(
                            "template: unknown field {{{name}}} (known: {})",
                            TEMPLATE_FIELDS
                                .iter()
                                .map(|f| format!("{{{f}}}"))
                                .collect::<Vec<_>>()
                                .join(" ")
                        )));
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(i));
                }
                '}' => return Err(usage("template: a lone '}' (write '}}' for a brace)")),
                '\\' if chars.peek() == Some(&'n') => {
                    chars.next();
                    text.push('\n');
                }
                '\\' if chars.peek() == Some(&'t') => {
                    chars.next();
                    text.push('\t');
                }
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }
}

/// How records are printed.
#[derive(Clone, Debug)]
pub enum Format {
    Value,
    /// Key, the separator, value.
    KeyValue(String),
    Json,
    Template(Template),
}

/// Writes `bytes` as text: as is when UTF-8, else escaped or base64.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], binary: Binary) {
    if std::str::from_utf8(bytes).is_ok() {
        out.extend_from_slice(bytes);
        return;
    }
    match binary {
        Binary::Base64 => base64(out, bytes),
        Binary::Escape => {
            for chunk in bytes.utf8_chunks() {
                out.extend_from_slice(chunk.valid().as_bytes());
                for b in chunk.invalid() {
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "\\x{b:02x}");
                }
            }
        }
    }
}

/// A key or value as a JSON string (escaped or base64 when not UTF-8).
fn text(bytes: Option<&[u8]>, binary: Binary) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => {
                let mut out = Vec::new();
                put_bytes(&mut out, b, binary);
                json!(String::from_utf8_lossy(&out))
            }
        },
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

fn headers_json(r: &Rec<'_>, binary: Binary) -> serde_json::Value {
    json!(r
        .headers
        .iter()
        .map(|(k, v)| json!({ "key": text(Some(k), binary), "value": text(*v, binary) }))
        .collect::<Vec<_>>())
}

/// Appends one record, with its trailing newline, to `out`.
pub fn write_record(out: &mut Vec<u8>, format: &Format, binary: Binary, r: &Rec<'_>) {
    match format {
        Format::Value => put_bytes(out, r.value.unwrap_or_default(), binary),
        Format::KeyValue(sep) => {
            put_bytes(out, r.key.unwrap_or_default(), binary);
            out.extend_from_slice(sep.as_bytes());
            put_bytes(out, r.value.unwrap_or_default(), binary);
        }
        Format::Json => {
            let v = json!({
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": text(r.key, binary),
                "value": text(r.value, binary),
                "headers": headers_json(r, binary),
            });
            let _ = write!(out, "{v}");
        }
        Format::Template(t) => {
            for piece in &t.pieces {
                match piece {
                    Piece::Text(s) => out.extend_from_slice(s.as_bytes()),
                    Piece::Field(i) => match TEMPLATE_FIELDS.get(*i).copied() {
                        Some("topic") => out.extend_from_slice(r.topic.as_bytes()),
                        Some("partition") => {
                            let _ = write!(out, "{}", r.partition);
                        }
                        Some("offset") => {
                            let _ = write!(out, "{}", r.offset);
                        }
                        Some("timestamp") => {
                            let _ = write!(out, "{}", r.timestamp);
                        }
                        Some("key") => put_bytes(out, r.key.unwrap_or_default(), binary),
                        Some("value") => put_bytes(out, r.value.unwrap_or_default(), binary),
                        Some("headers") => {
                            for (n, (k, v)) in r.headers.iter().enumerate() {
                                if n > 0 {
                                    out.push(b',');
                                }
                                put_bytes(out, k, binary);
                                out.push(b'=');
                                put_bytes(out, v.unwrap_or_default(), binary);
                            }
                        }
                        _ => {}
                    },
                }
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> Rec<'a> {
        Rec {
            topic: "t",
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            key,
            value,
            headers: vec![(b"h".as_slice(), Some(b"v".as_slice()))],
        }
    }

    fn render(format: &Format, binary: Binary, r: &Rec<'_>) -> String {
        let mut out = Vec::new();
        write_record(&mut out, format, binary, r);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn templates_name_known_fields_only() {
        let t = Template::parse("{partition}/{offset} {{{key}}}={value}\\t{headers}").unwrap();
        let r = rec(Some(b"k"), Some(b"v"));
        assert_eq!(
            render(&Format::Template(t), Binary::Escape, &r),
            "2/41 {k}=v\th=v\n"
        );
        let err = Template::parse("{offset} {nope}").unwrap_err();
        assert!(err.to_string().contains("unknown field {nope}"), "{err}");
        assert_eq!(super::super::exit_code(&err), 2);
        assert!(Template::parse("{offset").is_err());
        assert!(Template::parse("a } b").is_err());
    }

    #[test]
    fn non_utf8_is_escaped_or_base64() {
        let r = rec(None, Some(b"a\xffb"));
        assert_eq!(render(&Format::Value, Binary::Escape, &r), "a\\xffb\n");
        assert_eq!(render(&Format::Value, Binary::Base64, &r), "Yf9i\n");
        let kv = Format::KeyValue("\t".into());
        assert_eq!(
            render(&kv, Binary::Escape, &rec(Some(b"k"), Some(b"v"))),
            "k\tv\n"
        );
        let mut out = Vec::new();
        base64(&mut out, b"ab");
        assert_eq!(out, b"YWI=");
        out.clear();
        base64(&mut out, b"a");
        assert_eq!(out, b"YQ==");
    }

    #[test]
    fn json_carries_metadata() {
        let r = rec(Some(b"k"), Some(b"\xff"));
        let line = render(&Format::Json, Binary::Base64, &r);
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 41);
        assert_eq!(v["timestamp"], 1_700_000_000_000i64);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "/w==");
        assert_eq!(v["headers"][0]["key"], "h");
        assert_eq!(v["headers"][0]["value"], "v");
    }
}
