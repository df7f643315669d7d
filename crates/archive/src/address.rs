//! Classifies IP addresses as public or not, for the media host policy (CONTRACT.md
//! section 7, `ARCHIVER_ALLOWED_HOSTS`). Pure: no I/O, so it can be tested and extended alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not public, in words for the `host not allowed` reason; `None` when public.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// True when the address is routable on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let reason = if ip.is_unspecified() || a == 0 {
        "an unspecified (0.0.0.0/8) address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if a == 192 && b == 0 && c == 0 {
        "an IETF protocol assignment address"
    } else if ip.is_documentation() {
        "a documentation address"
    } else if a == 198 && (b == 18 || b == 19) {
        "a benchmarking address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() || a >= 240 {
        "a reserved address"
    } else {
        return None;
    };
    Some(reason)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    // Addresses that embed an IPv4 address are judged by it: mapped, NAT64, 6to4.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let segments = ip.segments();
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6] == [0, 0, 0, 0] {
        return v4_reason(Ipv4Addr::from(((segments[6] as u32) << 16) | segments[7] as u32));
    }
    if segments[0] == 0x2002 {
        return v4_reason(Ipv4Addr::from(((segments[1] as u32) << 16) | segments[2] as u32));
    }
    // IPv4-compatible ::a.b.c.d (deprecated; some stacks still route it as IPv4): named
    // by the embedded address, and refused even when that is public, as no media host
    // has one. `::` and `::1` are left to the checks below, which name them properly.
    if segments[0..6] == [0, 0, 0, 0, 0, 0] && segments[6] != 0 {
        let embedded = Ipv4Addr::from(((segments[6] as u32) << 16) | segments[7] as u32);
        return Some(v4_reason(embedded).unwrap_or("a deprecated IPv4-compatible address"));
    }
    // Teredo 2001:0::/32 carries the server's IPv4 in segments 2 and 3 and the client's
    // (inverted) in 6 and 7: a tunnel, never a media host; refused whatever it embeds.
    if segments[0] == 0x2001 && segments[1] == 0 {
        return Some("a Teredo tunnel address");
    }
    let reason = if ip.is_unspecified() {
        "an unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if segments[0] & 0xfe00 == 0xfc00 {
        "a unique-local (private) address"
    } else if segments[0] & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if segments[0] == 0x2001 && segments[1] == 0x0db8 {
        "a documentation address"
    } else if segments[0] == 0x2001 && segments[1] < 0x0200 {
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, benchmarking).
        "an IETF protocol assignment address"
    } else if segments[0] == 0x0100 && segments[1..4] == [0, 0, 0] {
        "a discard-only address"
    } else if segments[0] & 0xe000 != 0x2000 {
        // Only 2000::/3 is allocated for global unicast.
        "a reserved address"
    } else {
        return None;
    };
    Some(reason)
}

#[cfg(test)]
mod tests {
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
            ("2001:2::1", Some("IETF protocol")),
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
}
