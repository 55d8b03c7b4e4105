//! The packed block's round trips, widths and validation.

use super::*;

fn view(i: u32) -> ContactView {
    ContactView {
        binding: BindingRef {
            core: 3,
            slot: i,
            gen: 7,
        },
        contact: format!("sip:u{i}@10.0.0.1:5060;transport=udp").into(),
        expires_at: 3600 + i,
        q: Some(500),
        instance: Some("urn:uuid:00000000-0000-1000-8000-0123456789ab".into()),
        reg_id: Some(1),
        scope: None,
        source: "198.51.100.7:40000".parse().unwrap(),
        local: 1,
        flags: 5,
        path: None,
        call_id_hash: 0xdead_beef_0000_0001,
        cseq: 42,
    }
}

#[test]
fn round_trips_every_field_and_form() {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(1));
    let mut v6 = view(2);
    v6.source = "[2001:db8::1%3]:5062".parse().unwrap();
    v6.instance = Some("urn:uuid:00000000-0000-1000-8000-0123456789AB".into());
    v6.scope = Some("mobile".into());
    v6.path = Some("<sip:edge.example.com;lr>".into());
    v6.q = None;
    v6.reg_id = None;
    rec.contacts.push(v6);
    let mut plain = view(3);
    plain.instance = Some("<weird>".into());
    rec.contacts.push(plain);
    let mut none = view(4);
    none.instance = None;
    rec.contacts.push(none);
    let mut other_user = view(5);
    other_user.contact = "sip:alicex@10.0.0.9".into();
    rec.contacts.push(other_user);
    let mut sips = view(6);
    sips.contact = "sips:alice@10.0.0.9".into();
    rec.contacts.push(sips);
    let mut bare = view(7);
    bare.contact = "sip:alice@".into();
    rec.contacts.push(bare);
    rec.contacts[0].contact = "sip:alice@10.0.0.1:5060;transport=udp".into();
    let b = encode("alice@example.com", &rec).unwrap();
    assert_eq!(block_len(|i| b[i]), b.len());
    assert_eq!(stated_len(&b), Some(b.len()));
    assert_eq!(aor(&b), "alice@example.com");
    assert_eq!(decode(&b), rec);
    let first = contacts(&b).next().unwrap();
    assert!(first.instance_is("urn:uuid:00000000-0000-1000-8000-0123456789ab"));
    assert!(!first.instance_is("urn:uuid:00000000-0000-1000-8000-0123456789AB"));
}

#[test]
fn a_canonical_uuid_instance_costs_sixteen_bytes() {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(1));
    let packed = encode("u@x", &rec).unwrap().len();
    rec.contacts[0].instance = Some("urn:uuid:00000000-0000-1000-8000-0123456789AB".into());
    let text = encode("u@x", &rec).unwrap().len();
    assert_eq!(text - packed, 1 + 45 - 16);
}

#[test]
fn the_aor_user_is_not_stored_twice() {
    let mut rec = AorRecord::default();
    let mut v = view(1);
    v.contact = "sip:bob@10.0.0.1".into();
    rec.contacts.push(v);
    let short = encode("bob@x", &rec).unwrap();
    let long = encode("bobby@x", &rec).unwrap();
    assert_eq!(long.len() - short.len(), 2 + "sip:bob@".len());
    assert_eq!(decode(&short), rec);
    assert_eq!(decode(&long), rec);
}

#[test]
fn only_whole_blocks_are_valid() {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(1));
    let mut v6 = view(2);
    v6.source = "[2001:db8::1]:5062".parse().unwrap();
    v6.path = Some("<sip:p;lr>".into());
    v6.scope = Some("s".into());
    rec.contacts.push(v6);
    let b = encode("alice@example.com", &rec).unwrap();
    assert!(is_valid(&b));
    assert!(is_valid(&encode("gone@x", &AorRecord::default()).unwrap()));
    for cut in 0..b.len() {
        assert!(!is_valid(&b[..cut]), "cut at {cut}");
    }
    let mut longer = b.to_vec();
    longer.push(0);
    assert!(!is_valid(&longer));
}

#[test]
fn rebind_rewrites_bindings_and_expiries_only() {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(1));
    rec.contacts.push(view(2));
    let mut v6 = view(3);
    v6.source = "[2001:db8::1]:5062".parse().unwrap();
    v6.path = Some("<sip:p;lr>".into());
    rec.contacts.push(v6);
    let b = encode("alice@example.com", &rec).unwrap();
    // New values of other widths than the old: the block is rebuilt.
    let to = |i: usize| {
        (
            BindingRef {
                core: 9 + 300 * i as u16,
                slot: 1 << (7 * i),
                gen: 1,
            },
            [0, 100, u32::MAX][i],
        )
    };
    let b = rebind(&b, |i, _| to(i));
    assert!(is_valid(&b));
    let got = decode(&b);
    assert_eq!(got.contacts.len(), 3);
    for (i, c) in got.contacts.iter().enumerate() {
        let mut want = rec.contacts[i].clone();
        (want.binding, want.expires_at) = to(i);
        assert_eq!(*c, want);
    }
}

#[test]
fn a_typical_ua_fits_a_112_byte_heap_chunk() {
    // The REGISTER of `benches/common/memory.rs` made longer than any
    // it sends (two- and three-digit address bytes, a slot over 2^14,
    // an expiry a day after start, for three-byte varints): glibc serves
    // requests of up to 104 bytes from a 112-byte chunk, and 105..=120
    // from a 128-byte one.
    let mut rec = AorRecord::default();
    rec.contacts.push(ContactView {
        binding: BindingRef {
            core: 1,
            slot: 999_999,
            gen: 3,
        },
        contact: "sip:u0999999@10.15.255.255:5060;transport=udp".into(),
        expires_at: 86_400 + 3600,
        q: None,
        instance: Some("urn:uuid:00000000-0000-1000-8000-0000000f423f".into()),
        reg_id: Some(1),
        scope: None,
        source: "198.51.255.255:52024".parse().unwrap(),
        local: 0,
        flags: 7,
        path: None,
        call_id_hash: u64::MAX,
        cseq: 1,
    });
    let b = encode("u0999999@example.com", &rec).unwrap();
    assert_eq!(b.len(), 98);
    assert_eq!(decode(&b), rec);
}

#[test]
fn the_length_prefix_counts_itself_across_widths() {
    for path_len in 0..300 {
        let mut rec = AorRecord::default();
        let mut v = view(1);
        v.path = Some("p".repeat(path_len).into());
        rec.contacts.push(v);
        let b = encode("u@x", &rec).unwrap();
        assert_eq!(stated_len(&b), Some(b.len()), "path of {path_len}");
        assert!(is_valid(&b));
        assert_eq!(decode(&b), rec);
    }
}

#[test]
fn malformed_varints_and_unknown_bits_are_invalid() {
    let mut rec = AorRecord::default();
    rec.contacts.push(view(1));
    let b = encode("u@x", &rec).unwrap();
    assert!(is_valid(&b));
    // The same length written in two bytes, not one: still whole.
    let mut long = vec![(b.len() + 1) as u8 | 0x80, 0];
    long.extend_from_slice(&b[1..]);
    assert!(is_valid(&long));
    assert_eq!(decode(&long), rec);
    // A varint over 32 bits.
    let mut over = b.to_vec();
    over.splice(0..1, [0xff, 0xff, 0xff, 0xff, 0x1f]);
    assert!(!is_valid(&over));
    assert_eq!(stated_len(&over), None);
    // A `present` bit no encoder sets: the flags byte is followed by it.
    // len, AOR, count, binding + expiry + cseq, call-id hash, flags.
    let at = 1 + 4 + 1 + 6 + 8 + 1;
    assert_eq!(u32::from(b[at]), P_Q | P_REG_ID | P_UUID | P_LOCAL);
    let mut unknown = b.to_vec();
    unknown[at] |= 0x80;
    unknown.insert(at + 1, 0x04);
    unknown[0] += 1;
    assert!(!is_valid(&unknown));
}

#[test]
fn oversize_fields_are_refused_not_truncated() {
    let mut rec = AorRecord::default();
    let mut v = view(1);
    v.path = Some("x".repeat(70_000).into());
    rec.contacts.push(v);
    assert_eq!(encode("u@x", &rec), Err(TooLong));
}
