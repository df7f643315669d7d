//! Classifies IP addresses as public or not, for the media host policy (CONTRACT.md
//! section 7, `ARCHIVER_ALLOWED_HOSTS`). Pure: no I/O, so it can be tested and extended alone.
//!
//! "Public" follows the IANA IPv4 and IPv6 Special-Purpose Address Registries: every block
//! they mark as not globally reachable is refused (the tests transcribe both registries).
//! A few blocks they mark globally reachable are refused too, because no media host can be
//! there: the anycast service addresses and relays inside `192.0.0.0/24` and `2001::/23`.
//! Addresses outside the registries that are not unicast hosts (multicast, IPv6 outside
//! `2000::/3`) are refused as well.

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
    } else if a == 192 && b == 88 && c == 99 {
        // 192.88.99.0/24: the deprecated 6to4 relay anycast (RFC 7526), a tunnel relay.
        "a deprecated 6to4 relay address"
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
    // 64:ff9b:1::/48 (RFC 8215) is for translation inside one network, never global.
    if segments[0] == 0x64 && segments[1] == 0xff9b && segments[2] == 1 {
        return Some("a local-use IPv4/IPv6 translation address");
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
    } else if segments[0] == 0x3fff && segments[1] & 0xf000 == 0 {
        // 3fff::/20 (RFC 9637, 2024): documentation, inside 2000::/3.
        "a documentation address"
    } else if segments[0] == 0x2001 && segments[1] == 0x0002 && segments[2] == 0 {
        "a benchmarking address"
    } else if segments[0] == 0x2001 && segments[1] < 0x0200 {
        // 2001::/23: IETF protocol assignments (Teredo, ORCHID, benchmarking).
        "an IETF protocol assignment address"
    } else if segments[0] == 0x0100 && segments[1..4] == [0, 0, 0] {
        "a discard-only address"
    } else if segments[0] == 0x0100 && segments[1..4] == [0, 0, 1] {
        // 100:0:0:1::/64 (RFC 9780, 2025): a dummy prefix, never routed.
        "a dummy address"
    } else if segments[0] == 0x5f00 {
        // 5f00::/16 (RFC 9602): segment routing (SRv6) identifiers, not hosts.
        "a segment routing (SRv6) address"
    } else if segments[0] & 0xe000 != 0x2000 {
        // Only 2000::/3 is allocated for global unicast.
        "a reserved address"
    } else {
        return None;
    };
    Some(reason)
}

#[cfg(test)]
mod tests;
