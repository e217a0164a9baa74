//! Rendering the binary forms of inet/cidr, macaddr, macaddr8 and bit/varbit as the text the
//! server prints.
//!
//! # Traps
//! - `inet` prints `/bits` only when bits is not the full width; `cidr` always prints it.
//! - IPv6 follows Postgres' `inet_net_ntop` (from BIND): the longest run (≥ 2) of zero words
//!   becomes `::`, and `::a.b.c.d` / `::ffff:a.b.c.d` embed IPv4 — not quite what
//!   `std::net::Ipv6Addr` prints.

use std::fmt::Write;

use crate::error::ValueError;

fn err(type_name: &'static str, offset: usize, reason: &'static str) -> ValueError {
    ValueError::InvalidBinary {
        type_name,
        offset,
        reason,
    }
}

/// `inet_send`: family (2 = IPv4, 3 = IPv6), bits, is_cidr, address length, address.
pub(crate) fn render_inet(b: &[u8], type_name: &'static str) -> Result<String, ValueError> {
    let [family, bits, is_cidr, nb, addr @ ..] = b else {
        return Err(err(type_name, 0, "truncated"));
    };
    let mut out = String::with_capacity(48);
    let full = match (family, nb, addr.len()) {
        (2, 4, 4) => {
            write!(out, "{}.{}.{}.{}", addr[0], addr[1], addr[2], addr[3]).expect("String");
            32
        }
        (3, 16, 16) => {
            ipv6(&mut out, addr);
            128
        }
        _ => return Err(err(type_name, 0, "invalid family or address length")),
    };
    if *bits > full {
        return Err(err(type_name, 1, "bits out of range"));
    }
    if *is_cidr != 0 || *bits != full {
        write!(out, "/{bits}").expect("String");
    }
    Ok(out)
}

fn ipv6(out: &mut String, a: &[u8]) {
    let words: Vec<u16> = a
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    // Longest run of zero words (first one wins on ties), at least 2 long.
    let (mut best, mut best_len) = (usize::MAX, 0);
    let mut i = 0;
    while i < 8 {
        if words[i] == 0 {
            let start = i;
            while i < 8 && words[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best = usize::MAX;
    }
    for (i, w) in words.iter().enumerate() {
        if best != usize::MAX && i >= best && i < best + best_len {
            if i == best {
                out.push(':');
            }
            continue;
        }
        if i != 0 {
            out.push(':');
        }
        let embedded_v4 =
            i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && words[5] == 0xffff));
        if embedded_v4 {
            write!(out, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]).expect("String");
            return;
        }
        write!(out, "{w:x}").expect("String");
    }
    if best != usize::MAX && best + best_len == 8 {
        out.push(':');
    }
}

/// `macaddr` (6 bytes) / `macaddr8` (8 bytes): lower-case hex pairs joined by `:`.
pub(crate) fn render_mac(
    b: &[u8],
    len: usize,
    type_name: &'static str,
) -> Result<String, ValueError> {
    if b.len() != len {
        return Err(err(type_name, 0, "wrong length"));
    }
    let parts: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(parts.join(":"))
}

/// `bit_send`: `i32` bit length, then the bits, most significant first.
pub(crate) fn render_bits(b: &[u8]) -> Result<String, ValueError> {
    let n = b
        .get(..4)
        .map(|l| i32::from_be_bytes([l[0], l[1], l[2], l[3]]))
        .ok_or_else(|| err("bit", 0, "truncated"))?;
    let n = usize::try_from(n).map_err(|_| err("bit", 0, "negative length"))?;
    let data = &b[4..];
    if data.len() != n.div_ceil(8) {
        return Err(err("bit", 4, "length does not match the bit count"));
    }
    Ok((0..n)
        .map(|i| {
            if data[i / 8] & (0x80 >> (i % 8)) != 0 {
                '1'
            } else {
                '0'
            }
        })
        .collect())
}
