//! Encoding primitives for the generated record encoders
//! ([`crate::metadata_records`]): Kafka's classic and compact (flexible
//! version) encodings of strings, bytes and arrays, and tagged-field
//! sections. Writing cannot fail; lengths our own values cannot express
//! (over `i32::MAX` bytes) are invariant violations and panic.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

/// Unsigned LEB128 varint.
pub fn put_uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn len_u32(len: usize) -> u32 {
    assert!(
        len < i32::MAX as usize,
        "length {len} does not fit Kafka's encoding"
    );
    len as u32
}

/// A length prefix: compact (uvarint length+1, 0 for null) when `flexible`,
/// otherwise `i16` (strings) or `i32` (bytes, arrays), -1 for null.
fn put_len(out: &mut BytesMut, len: Option<usize>, flexible: bool, classic_i16: bool) {
    match (len, flexible) {
        (None, true) => put_uvarint(out, 0),
        (Some(n), true) => put_uvarint(out, len_u32(n) + 1),
        (None, false) if classic_i16 => out.put_i16(-1),
        (None, false) => out.put_i32(-1),
        (Some(n), false) if classic_i16 => {
            assert!(n <= i16::MAX as usize, "string of {n} bytes is too long");
            out.put_i16(n as i16)
        }
        (Some(n), false) => out.put_i32(len_u32(n) as i32),
    }
}

pub fn put_str(out: &mut BytesMut, s: &str, flexible: bool) {
    put_len(out, Some(s.len()), flexible, true);
    out.put_slice(s.as_bytes());
}

pub fn put_nullable_str(out: &mut BytesMut, s: Option<&str>, flexible: bool) {
    match s {
        Some(s) => put_str(out, s, flexible),
        None => put_len(out, None, flexible, true),
    }
}

pub fn put_bytes(out: &mut BytesMut, b: &[u8], flexible: bool) {
    put_len(out, Some(b.len()), flexible, false);
    out.put_slice(b);
}

pub fn put_nullable_bytes(out: &mut BytesMut, b: Option<&[u8]>, flexible: bool) {
    match b {
        Some(b) => put_bytes(out, b, flexible),
        None => put_len(out, None, flexible, false),
    }
}

/// An array: its length, then each element written by `elem`.
pub fn put_array<T>(
    out: &mut BytesMut,
    items: &[T],
    flexible: bool,
    mut elem: impl FnMut(&mut BytesMut, &T),
) {
    put_len(out, Some(items.len()), flexible, false);
    for item in items {
        elem(out, item);
    }
}

pub fn put_nullable_array<T>(
    out: &mut BytesMut,
    items: Option<&[T]>,
    flexible: bool,
    elem: impl FnMut(&mut BytesMut, &T),
) {
    match items {
        Some(items) => put_array(out, items, flexible, elem),
        None => put_len(out, None, flexible, false),
    }
}

/// A nullable struct: -1 for null, else 1 and the struct written by `write`.
pub fn put_nullable_struct<T>(
    out: &mut BytesMut,
    value: Option<&T>,
    write: impl FnOnce(&mut BytesMut, &T),
) {
    match value {
        None => out.put_i8(-1),
        Some(v) => {
            out.put_i8(1);
            write(out, v)
        }
    }
}

/// The known tagged fields of one struct being encoded, each value encoded
/// into its own buffer so that its size can precede it.
#[derive(Debug, Default)]
pub struct TaggedFields {
    fields: Vec<(u32, BytesMut)>,
}

impl TaggedFields {
    /// A buffer for the value of tag `tag`; tags must be added in
    /// increasing order.
    pub fn field(&mut self, tag: u32) -> &mut BytesMut {
        if let Some((last, _)) = self.fields.last() {
            assert!(*last < tag, "tagged fields added out of order");
        }
        self.fields.push((tag, BytesMut::new()));
        let last = self.fields.len() - 1;
        &mut self.fields[last].1
    }
}

/// Writes a tagged-field section: the known fields merged in tag order with
/// the unknown ones kept from decoding (as Kafka's `RawTaggedFieldWriter`
/// does).
pub fn put_tagged_fields(out: &mut BytesMut, known: TaggedFields, unknown: &BTreeMap<i32, Bytes>) {
    let mut all: Vec<(u32, &[u8])> = known.fields.iter().map(|(t, b)| (*t, &b[..])).collect();
    for (tag, value) in unknown {
        assert!(*tag >= 0, "unknown tagged field {tag} is negative");
        let tag = *tag as u32;
        assert!(
            known.fields.iter().all(|(t, _)| *t != tag),
            "tag {tag} is both known and unknown"
        );
        all.push((tag, value));
    }
    all.sort_by_key(|(t, _)| *t);
    put_uvarint(out, len_u32(all.len()));
    for (tag, value) in all {
        put_uvarint(out, tag);
        put_uvarint(out, len_u32(value.len()));
        out.put_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarints_and_lengths() {
        let mut out = BytesMut::new();
        put_uvarint(&mut out, 0);
        put_uvarint(&mut out, 127);
        put_uvarint(&mut out, 300);
        assert_eq!(&out[..], &[0, 0x7f, 0xac, 0x02]);
        let mut out = BytesMut::new();
        put_nullable_str(&mut out, None, true);
        put_nullable_str(&mut out, None, false);
        put_str(&mut out, "ab", true);
        put_str(&mut out, "ab", false);
        put_nullable_bytes(&mut out, None, false);
        assert_eq!(
            &out[..],
            &[0, 0xff, 0xff, 3, b'a', b'b', 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn tagged_fields_merge_known_and_unknown_in_tag_order() {
        let mut known = TaggedFields::default();
        known.field(1).put_u8(9);
        let unknown = BTreeMap::from([(0, Bytes::from_static(&[7, 7])), (5, Bytes::new())]);
        let mut out = BytesMut::new();
        put_tagged_fields(&mut out, known, &unknown);
        assert_eq!(&out[..], &[3, 0, 2, 7, 7, 1, 1, 9, 5, 0]);
    }
}
