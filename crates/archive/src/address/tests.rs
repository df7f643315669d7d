//! The address classifier's tables: chosen addresses, and both IANA special-purpose registries.

use super::*;

/// Every verdict is checked by calling the classifier only: no test ever connects to
/// one of these addresses.
#[test]
fn addresses_are_classified() {
    let cases = [
        // Public.
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("93.184.216.34", None),
        ("172.32.0.1", None),
        ("100.128.0.1", None),
        ("100.63.255.255", None),
        ("192.0.1.1", None),
        ("198.20.0.1", None),
        ("223.255.255.255", None),
        ("2606:4700::1", None),
        ("2606:4700::1111", None),
        ("2a00:1450:4001::200e", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),
        ("2002:808:808::1", None),
        // IPv4.
        ("0.0.0.0", Some("unspecified")),
        ("0.1.2.3", Some("unspecified")),
        ("127.0.0.1", Some("loopback")),
        ("127.9.9.9", Some("loopback")),
        ("127.255.255.254", Some("loopback")),
        ("10.0.0.1", Some("private")),
        ("10.255.255.255", Some("private")),
        ("172.16.0.1", Some("private")),
        ("172.31.255.255", Some("private")),
        ("192.168.1.1", Some("private")),
        ("169.254.169.254", Some("link-local")),
        ("169.254.0.1", Some("link-local")),
        ("100.64.0.1", Some("carrier-grade NAT")),
        ("100.127.255.255", Some("carrier-grade NAT")),
        ("192.0.0.8", Some("IETF protocol")),
        ("192.0.0.170", Some("IETF protocol")),
        ("192.0.2.1", Some("documentation")),
        ("198.51.100.7", Some("documentation")),
        ("203.0.113.9", Some("documentation")),
        ("198.18.0.1", Some("benchmarking")),
        ("198.19.255.255", Some("benchmarking")),
        ("224.0.0.1", Some("multicast")),
        ("239.255.255.250", Some("multicast")),
        ("240.0.0.1", Some("reserved")),
        ("255.255.255.255", Some("reserved")),
        // IPv6.
        ("::", Some("unspecified")),
        ("::1", Some("loopback")),
        ("fc00::1", Some("unique-local")),
        ("fd00::1", Some("unique-local")),
        ("fdff:ffff::1", Some("unique-local")),
        ("fe80::1", Some("link-local")),
        ("febf::1", Some("link-local")),
        ("ff02::1", Some("multicast")),
        ("ff0e::1", Some("multicast")),
        ("2001:db8::1", Some("documentation")),
        // Regression (issue 13): 3fff::/20 (RFC 9637) was classed public.
        ("3fff::1", Some("documentation")),
        ("3fff:fff:ffff::1", Some("documentation")),
        ("3fff:1000::1", None),
        ("192.88.99.1", Some("6to4 relay")),
        ("2001:2::1", Some("benchmarking")),
        ("2001:3::1", Some("IETF protocol")),
        ("100::1", Some("discard-only")),
        ("fec0::1", Some("reserved")),
        ("4000::1", Some("reserved")),
        // IPv6 forms that embed an IPv4 address: judged by the embedded address.
        ("::ffff:127.0.0.1", Some("loopback")),
        ("::ffff:7f00:1", Some("loopback")),
        ("::ffff:10.0.0.1", Some("private")),
        ("::ffff:169.254.169.254", Some("link-local")),
        ("::ffff:0.0.0.0", Some("unspecified")),
        ("::127.0.0.1", Some("loopback")),
        ("::169.254.169.254", Some("link-local")),
        ("::10.1.2.3", Some("private")),
        ("::8.8.8.8", Some("IPv4-compatible")),
        ("64:ff9b::10.0.0.1", Some("private")),
        ("64:ff9b::127.0.0.1", Some("loopback")),
        ("64:ff9b::169.254.169.254", Some("link-local")),
        ("2002:7f00:1::", Some("loopback")),
        ("2002:a9fe:a9fe::1", Some("link-local")),
        ("2002:c0a8:101::1", Some("private")),
        // Teredo: refused whatever it embeds.
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some("Teredo")),
        ("2001::1", Some("Teredo")),
    ];
    for (text, expected) in cases {
        let ip: IpAddr = text.parse().unwrap();
        let verdict = non_public_reason(ip);
        match expected {
            None => assert_eq!(verdict, None, "{text} should be public"),
            Some(word) => assert!(
                verdict.is_some_and(|reason| reason.contains(word)),
                "{text}: {verdict:?}, expected {word}"
            ),
        }
        assert_eq!(is_public(ip), expected.is_none(), "{text}");
    }
}

/// Whether the registry marks a block globally reachable.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reachable {
    Yes,
    No,
    /// "N/A" in the registry (deprecated blocks, Teredo, 6to4).
    NotApplicable,
}

/// What the classifier must say of the first and the last address of a block.
#[derive(Debug, Clone, Copy)]
enum Verdict {
    Public,
    /// Refused; the reason contains the first word for the block's first address and
    /// the second for its last.
    Refused(&'static str, &'static str),
    /// Judged by the IPv4 address it embeds (the connection goes to that address).
    Embedded,
}
use Reachable::{No, NotApplicable as NA, Yes};
use Verdict::{Embedded, Public, Refused};

/// The IANA IPv4 Special-Purpose Address Registry
/// (<https://www.iana.org/assignments/iana-ipv4-special-registry>), every entry, as it
/// stood in 2025: block, name, RFC, "Globally Reachable", and our verdict.
/// Transcribed from knowledge of the registry's 2025 content, not from a download made
/// for this test; check it against the registry when it changes.
const IPV4_REGISTRY: &[(&str, &str, &str, Reachable, Verdict)] = &[
    (
        "0.0.0.0/8",
        "\"This network\"",
        "RFC 791",
        No,
        Refused("unspecified", "unspecified"),
    ),
    (
        "0.0.0.0/32",
        "\"This host on this network\"",
        "RFC 1122",
        No,
        Refused("unspecified", "unspecified"),
    ),
    (
        "10.0.0.0/8",
        "Private-Use",
        "RFC 1918",
        No,
        Refused("private", "private"),
    ),
    (
        "100.64.0.0/10",
        "Shared Address Space",
        "RFC 6598",
        No,
        Refused("carrier-grade NAT", "carrier-grade NAT"),
    ),
    (
        "127.0.0.0/8",
        "Loopback",
        "RFC 1122",
        No,
        Refused("loopback", "loopback"),
    ),
    (
        "169.254.0.0/16",
        "Link Local",
        "RFC 3927",
        No,
        Refused("link-local", "link-local"),
    ),
    (
        "172.16.0.0/12",
        "Private-Use",
        "RFC 1918",
        No,
        Refused("private", "private"),
    ),
    (
        "192.0.0.0/24",
        "IETF Protocol Assignments",
        "RFC 6890",
        No,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.0.0/29",
        "IPv4 Service Continuity Prefix",
        "RFC 7335",
        No,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.0.8/32",
        "IPv4 dummy address",
        "RFC 7600",
        No,
        Refused("IETF protocol", "IETF protocol"),
    ),
    // Globally reachable anycast services, but never a media host: refused with their /24.
    (
        "192.0.0.9/32",
        "Port Control Protocol Anycast",
        "RFC 7723",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.0.10/32",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.0.170/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880",
        No,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.0.171/32",
        "NAT64/DNS64 Discovery",
        "RFC 8880",
        No,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "192.0.2.0/24",
        "Documentation (TEST-NET-1)",
        "RFC 5737",
        No,
        Refused("documentation", "documentation"),
    ),
    ("192.31.196.0/24", "AS112-v4", "RFC 7535", Yes, Public),
    ("192.52.193.0/24", "AMT", "RFC 7450", Yes, Public),
    (
        "192.88.99.0/24",
        "Deprecated (6to4 Relay Anycast)",
        "RFC 7526",
        NA,
        Refused("6to4 relay", "6to4 relay"),
    ),
    (
        "192.168.0.0/16",
        "Private-Use",
        "RFC 1918",
        No,
        Refused("private", "private"),
    ),
    (
        "192.175.48.0/24",
        "Direct Delegation AS112 Service",
        "RFC 7534",
        Yes,
        Public,
    ),
    (
        "198.18.0.0/15",
        "Benchmarking",
        "RFC 2544",
        No,
        Refused("benchmarking", "benchmarking"),
    ),
    (
        "198.51.100.0/24",
        "Documentation (TEST-NET-2)",
        "RFC 5737",
        No,
        Refused("documentation", "documentation"),
    ),
    (
        "203.0.113.0/24",
        "Documentation (TEST-NET-3)",
        "RFC 5737",
        No,
        Refused("documentation", "documentation"),
    ),
    (
        "240.0.0.0/4",
        "Reserved",
        "RFC 1112",
        No,
        Refused("reserved", "reserved"),
    ),
    (
        "255.255.255.255/32",
        "Limited Broadcast",
        "RFC 8190",
        No,
        Refused("reserved", "reserved"),
    ),
];

/// The IANA IPv6 Special-Purpose Address Registry
/// (<https://www.iana.org/assignments/iana-ipv6-special-registry>), every entry, as it
/// stood in 2025 (its newest entries: 3fff::/20, RFC 9637, 2024; 5f00::/16, RFC 9602,
/// 2024; 2001:1::3/128, RFC 9665, 2024; 100:0:0:1::/64, RFC 9780, 2025). Transcribed
/// from knowledge of the registry's 2025 content, not from a download made for this
/// test; check it against the registry when it changes.
const IPV6_REGISTRY: &[(&str, &str, &str, Reachable, Verdict)] = &[
    (
        "::1/128",
        "Loopback Address",
        "RFC 4291",
        No,
        Refused("loopback", "loopback"),
    ),
    (
        "::/128",
        "Unspecified Address",
        "RFC 4291",
        No,
        Refused("unspecified", "unspecified"),
    ),
    // Not reachable as IPv6, but a socket connects a mapped address over IPv4.
    ("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", No, Embedded),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", "RFC 6052", Yes, Embedded),
    (
        "64:ff9b:1::/48",
        "IPv4-IPv6 Translat.",
        "RFC 8215",
        No,
        Refused("local-use", "local-use"),
    ),
    (
        "100::/64",
        "Discard-Only Address Block",
        "RFC 6666",
        No,
        Refused("discard-only", "discard-only"),
    ),
    (
        "100:0:0:1::/64",
        "Dummy IPv6 Prefix",
        "RFC 9780",
        No,
        Refused("dummy", "dummy"),
    ),
    (
        "2001::/23",
        "IETF Protocol Assignments",
        "RFC 2928",
        No,
        Refused("Teredo", "IETF protocol"),
    ),
    ("2001::/32", "TEREDO", "RFC 4380", NA, Refused("Teredo", "Teredo")),
    // Globally reachable anycast services, relays and identifiers inside 2001::/23,
    // but never a media host: refused with the /23.
    (
        "2001:1::1/128",
        "Port Control Protocol Anycast",
        "RFC 7723",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:1::2/128",
        "Traversal Using Relays around NAT Anycast",
        "RFC 8155",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:1::3/128",
        "DNS-SD Service Registration Protocol Anycast",
        "RFC 9665",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:2::/48",
        "Benchmarking",
        "RFC 5180",
        No,
        Refused("benchmarking", "benchmarking"),
    ),
    (
        "2001:3::/32",
        "AMT",
        "RFC 7450",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:4:112::/48",
        "AS112-v6",
        "RFC 7535",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:10::/28",
        "Deprecated (previously ORCHID)",
        "RFC 4843",
        NA,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:20::/28",
        "ORCHIDv2",
        "RFC 7343",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:30::/28",
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix",
        "RFC 9374",
        Yes,
        Refused("IETF protocol", "IETF protocol"),
    ),
    (
        "2001:db8::/32",
        "Documentation",
        "RFC 3849",
        No,
        Refused("documentation", "documentation"),
    ),
    ("2002::/16", "6to4", "RFC 3056", NA, Embedded),
    (
        "2620:4f:8000::/48",
        "Direct Delegation AS112 Service",
        "RFC 7534",
        Yes,
        Public,
    ),
    (
        "3fff::/20",
        "Documentation",
        "RFC 9637",
        No,
        Refused("documentation", "documentation"),
    ),
    (
        "5f00::/16",
        "Segment Routing (SRv6) SIDs",
        "RFC 9602",
        No,
        Refused("SRv6", "SRv6"),
    ),
    (
        "fc00::/7",
        "Unique-Local",
        "RFC 4193",
        No,
        Refused("unique-local", "unique-local"),
    ),
    (
        "fe80::/10",
        "Link-Local Unicast",
        "RFC 4291",
        No,
        Refused("link-local", "link-local"),
    ),
];

/// The first and the last address of a block written `address/length`.
fn first_and_last(block: &str) -> (IpAddr, IpAddr) {
    let (address, length) = block.split_once('/').unwrap();
    let length: u32 = length.parse().unwrap();
    match address.parse::<IpAddr>().unwrap() {
        IpAddr::V4(ip) => {
            let host_bits = u32::MAX.checked_shr(length).unwrap_or(0);
            let first = u32::from(ip) & !host_bits;
            (Ipv4Addr::from(first).into(), Ipv4Addr::from(first | host_bits).into())
        }
        IpAddr::V6(ip) => {
            let host_bits = u128::MAX.checked_shr(length).unwrap_or(0);
            let first = u128::from(ip) & !host_bits;
            (Ipv6Addr::from(first).into(), Ipv6Addr::from(first | host_bits).into())
        }
    }
}

/// The IPv4 address an IPv6 address embeds, for the blocks judged by it.
fn embedded(ip: IpAddr) -> Ipv4Addr {
    let IpAddr::V6(v6) = ip else { panic!("{ip} is not IPv6") };
    let s = v6.segments();
    let (high, low) = if s[0] == 0x2002 { (s[1], s[2]) } else { (s[6], s[7]) };
    Ipv4Addr::from((u32::from(high) << 16) | u32::from(low))
}

/// Regression (issue 13): every block the registries mark not globally reachable is
/// refused, at both ends, with a reason that names it; the globally reachable ones are
/// public unless refused on purpose (commented in the tables).
#[test]
fn the_iana_special_purpose_registries_are_honoured() {
    for (block, name, rfc, reachable, verdict) in IPV4_REGISTRY.iter().chain(IPV6_REGISTRY) {
        let shown = format!("{block} ({name}, {rfc})");
        if *reachable == No {
            assert!(
                !matches!(verdict, Public),
                "{shown}: not globally reachable, so never public"
            );
        }
        let (first, last) = first_and_last(block);
        for (ip, end) in [(first, 0), (last, 1)] {
            let got = non_public_reason(ip);
            match verdict {
                Public => assert_eq!(got, None, "{shown}: {ip} should be public"),
                Refused(first_word, last_word) => {
                    let word = if end == 0 { first_word } else { last_word };
                    assert!(
                        got.is_some_and(|reason| reason.contains(word)),
                        "{shown}: {ip} gave {got:?}, expected a reason with {word:?}"
                    );
                }
                Embedded => assert_eq!(got, v4_reason(embedded(ip)), "{shown}: {ip}"),
            }
        }
    }
}
