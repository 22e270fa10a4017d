//! The wire format and broker-side validation.

use std::sync::Arc;

use super::req;
use crate::model::{CompatibilityLevel, SchemaType};
use crate::wire::{
    encode_message_indexes, frame, parse_framed, parse_header, parse_message_indexes, WireError,
};
use crate::{MemoryJournal, Registry};

#[test]
fn headers() {
    assert_eq!(parse_header(&[0, 0, 0, 0, 7, 9]).unwrap(), (7, &[9u8][..]));
    assert_eq!(parse_header(&[0, 0, 0]), Err(WireError::TooShort(3)));
    assert_eq!(parse_header(&[1, 0, 0, 0, 7]), Err(WireError::BadMagic(1)));
}

#[test]
fn message_indexes() {
    // [0] is the single byte 0 (count 0).
    assert_eq!(encode_message_indexes(&[0]), vec![0]);
    assert_eq!(
        parse_message_indexes(&[0, 42]).unwrap(),
        (vec![0], &[42u8][..])
    );
    for path in [vec![1], vec![1, 0], vec![3, 2, 100], vec![0, 0]] {
        let mut bytes = encode_message_indexes(&path);
        bytes.push(9);
        assert_eq!(
            parse_message_indexes(&bytes).unwrap(),
            (path.clone(), &[9u8][..]),
            "{path:?}"
        );
    }
    // Zig-zag: count 2 is byte 4; [1, 0] is 04 02 00.
    assert_eq!(encode_message_indexes(&[1, 0]), vec![4, 2, 0]);
    assert!(parse_message_indexes(&[1]).is_err(), "count -1");
    assert!(parse_message_indexes(&[4, 2]).is_err(), "truncated");
    assert!(parse_message_indexes(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).is_err());
    assert!(parse_message_indexes(&[2, 1]).is_err(), "negative index");
    let framed = frame(5, Some(&[1, 0]), b"xy");
    let f = parse_framed(&framed, true).unwrap();
    assert_eq!(
        (f.schema_id, f.message_indexes, f.payload),
        (5, vec![1, 0], &b"xy"[..])
    );
}

#[tokio::test]
async fn validate_records() {
    let r = Registry::new(Arc::new(MemoryJournal::new()));
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    let avro = r
        .register("a", req(SchemaType::Avro, r#""string""#), false)
        .await
        .unwrap();
    let proto = r
        .register(
            "p",
            req(
                SchemaType::Protobuf,
                "syntax = \"proto3\"; message A { int32 x = 1; } message B { string y = 1; }",
            ),
            false,
        )
        .await
        .unwrap();
    let json = r
        .register("j", req(SchemaType::Json, r#"{"type":"integer"}"#), false)
        .await
        .unwrap();

    assert!(r
        .validate(&frame(avro.id, None, &[4, b'h', b'i']), true)
        .is_ok());
    assert!(
        r.validate(&frame(avro.id, None, &[40, b'h']), false)
            .is_ok(),
        "header only"
    );
    assert!(r
        .validate(&frame(avro.id, None, &[40, b'h']), true)
        .is_err());
    assert!(r
        .validate(&frame(99, None, b""), false)
        .unwrap_err()
        .contains("99"));
    assert!(r.validate(b"plain text", false).is_err());

    assert!(r
        .validate(&frame(proto.id, Some(&[1]), &[0x0a, 1, b'z']), true)
        .is_ok());
    assert!(r
        .validate(&frame(proto.id, Some(&[0]), &[0x08, 5]), true)
        .is_ok());
    assert!(
        r.validate(&frame(proto.id, Some(&[2]), b""), false)
            .is_err(),
        "no third message"
    );
    assert!(
        r.validate(&frame(proto.id, Some(&[0, 0]), b""), false)
            .is_err(),
        "no nested message"
    );

    assert!(r.validate(&frame(json.id, None, b"12"), true).is_ok());
    assert!(r.validate(&frame(json.id, None, b"\"x\""), true).is_err());

    // A soft-deleted version's id still validates; a hard-deleted one does not.
    r.delete_subject("j", false).await.unwrap();
    assert!(r.validate(&frame(json.id, None, b"12"), true).is_ok());
    r.delete_subject("j", true).await.unwrap();
    assert!(r.validate(&frame(json.id, None, b"12"), true).is_err());
}

#[tokio::test]
async fn decode_records_to_json() {
    use serde_json::json;
    let r = Registry::new(Arc::new(MemoryJournal::new()));
    r.set_config(None, CompatibilityLevel::None, None)
        .await
        .unwrap();
    let avro = r
        .register(
            "a",
            req(
                SchemaType::Avro,
                r#"{"type":"record","name":"U","fields":[{"name":"id","type":"long"},
                {"name":"name","type":["null","string"]},{"name":"raw","type":"bytes"},
                {"name":"tags","type":{"type":"array","items":"string"}},
                {"name":"c","type":{"type":"enum","name":"C","symbols":["RED","BLUE"]}},
                {"name":"d","type":"double"}]}"#,
            ),
            false,
        )
        .await
        .unwrap();
    let proto = r
        .register(
            "p",
            req(
                SchemaType::Protobuf,
                "syntax = \"proto3\"; message A { int32 x = 1; } \
                 message B { string y = 1; int64 big = 2; A a = 3; }",
            ),
            false,
        )
        .await
        .unwrap();
    let json_id = r
        .register("j", req(SchemaType::Json, r#"{"type":"object"}"#), false)
        .await
        .unwrap()
        .id;

    // id 7, name "ab" (union branch 1), raw [1, 2], tags ["x"], c BLUE, d NaN.
    let mut datum = vec![14, 2, 4, b'a', b'b', 4, 1, 2, 2, 2, b'x', 0, 2];
    datum.extend_from_slice(&f64::NAN.to_le_bytes());
    let d = r.decode(&frame(avro.id, None, &datum)).unwrap();
    assert_eq!((d.schema_id, d.schema_type), (avro.id, SchemaType::Avro));
    assert_eq!(
        d.value.unwrap(),
        json!({"id": 7, "name": "ab", "raw": "AQI=", "tags": ["x"], "c": "BLUE", "d": "NaN"})
    );
    let bad = r.decode(&frame(avro.id, None, &[14])).unwrap();
    assert!(bad.value.unwrap_err().contains("truncated"));

    // B { y: "z", big: 5, a: { x: 1 } }: 64-bit integers as strings, defaults left out.
    let payload = [0x0a, 1, b'z', 0x10, 5, 0x1a, 2, 0x08, 1];
    let d = r.decode(&frame(proto.id, Some(&[1]), &payload)).unwrap();
    assert_eq!(d.schema_type, SchemaType::Protobuf);
    assert_eq!(
        d.value.unwrap(),
        json!({"y": "z", "big": "5", "a": {"x": 1}})
    );
    let d = r.decode(&frame(proto.id, Some(&[0]), &[])).unwrap();
    assert_eq!(d.value.unwrap(), json!({}));
    assert!(r
        .decode(&frame(proto.id, Some(&[5]), &[]))
        .unwrap()
        .value
        .is_err());

    let d = r
        .decode(&frame(json_id, None, br#"{"k": [1, true]}"#))
        .unwrap();
    assert_eq!(d.value.unwrap(), json!({"k": [1, true]}));
    assert!(r
        .decode(&frame(json_id, None, b"{"))
        .unwrap()
        .value
        .is_err());

    // Not framed, or an id nobody registered: not decoded, not an error.
    assert!(r.decode(b"plain").is_none());
    assert!(r.decode(&frame(424_242, None, b"x")).is_none());
}
