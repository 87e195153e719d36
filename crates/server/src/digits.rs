//! Numbers written as ASCII into byte buffers on the message path (branch ids, Via
//! ports, loop marks). `core::fmt` costs several hundred instructions per `write!` through
//! its formatter machinery; these run at every relayed request.

/// The low `N` hex digits of `value`, lowercase and zero-padded (callers pick `N` to fit
/// the whole value: 8 for a `u32`, 16 for a `u64`).
pub(crate) fn hex_fixed<const N: usize>(value: u64) -> [u8; N] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; N];
    let mut v = value;
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
    out
}

/// Appends `value` in lowercase hex without leading zeros ("0" for zero), as `{:x}` does.
pub(crate) fn push_hex(out: &mut impl Extend<u8>, value: u64) {
    let digits = (64 - value.leading_zeros()).div_ceil(4).max(1) as usize;
    let all: [u8; 16] = hex_fixed(value);
    out.extend(all[16 - digits..].iter().copied());
}

/// Appends `value` in decimal.
pub(crate) fn push_decimal(out: &mut impl Extend<u8>, value: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend(buf.format(value).bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digits_match_core_fmt() {
        for v in [
            0u64,
            1,
            9,
            10,
            15,
            16,
            255,
            4096,
            0xdead_beef,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut hex = Vec::new();
            push_hex(&mut hex, v);
            assert_eq!(hex, format!("{v:x}").into_bytes(), "{v}");
            let mut dec = Vec::new();
            push_decimal(&mut dec, v);
            assert_eq!(dec, v.to_string().into_bytes(), "{v}");
            assert_eq!(
                hex_fixed::<16>(v).to_vec(),
                format!("{v:016x}").into_bytes()
            );
        }
        assert_eq!(&hex_fixed::<8>(0xab12cd), b"00ab12cd");
        assert_eq!(&hex_fixed::<8>(u32::MAX.into()), b"ffffffff");
    }
}
