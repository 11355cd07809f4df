//! The one number syntax of every `smmuctl` argument and every number written as a JSON
//! string: `0x…` hexadecimal, `0o…` octal, `0b…` binary, otherwise decimal; `_` may separate
//! digits anywhere (`0x8000_0000`).

/// Parses `text` as a 64-bit unsigned number, or says in one line why it is not one.
pub(crate) fn parse_u64(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    // parse_int reads "0X"/"0B"/"0O" as decimal garbage; accept them like their lower case.
    let lowered = match trimmed.get(..2) {
        Some("0X" | "0B" | "0O") => trimmed.to_ascii_lowercase(),
        _ => trimmed.to_string(),
    };
    let digits_after_prefix = lowered
        .strip_prefix("0x")
        .or_else(|| lowered.strip_prefix("0o"))
        .or_else(|| lowered.strip_prefix("0b"))
        .unwrap_or(&lowered);
    if digits_after_prefix.is_empty() || digits_after_prefix.chars().all(|c| c == '_') {
        return Err(format!("'{text}' is not a number"));
    }
    if lowered.starts_with('-') || lowered.starts_with('+') {
        return Err(format!("'{text}' is not a non-negative number"));
    }
    parse_int::parse::<u64>(&lowered).map_err(|e| {
        let kind = if lowered.starts_with("0x") {
            "hexadecimal"
        } else if lowered.starts_with("0o") {
            "octal"
        } else if lowered.starts_with("0b") {
            "binary"
        } else {
            "decimal (write 0x for hexadecimal)"
        };
        match e.kind() {
            std::num::IntErrorKind::PosOverflow => format!("'{text}' does not fit in 64 bits"),
            _ => format!("'{text}' is not a {kind} number"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_u64;

    #[test]
    fn every_base_and_separators() {
        assert_eq!(parse_u64("2147483648"), Ok(0x8000_0000));
        assert_eq!(parse_u64("0x8000_0000"), Ok(0x8000_0000));
        assert_eq!(parse_u64("0X1f"), Ok(31));
        assert_eq!(parse_u64("0b1001"), Ok(9));
        assert_eq!(parse_u64("0B1001"), Ok(9));
        assert_eq!(parse_u64("0o17"), Ok(15));
        assert_eq!(parse_u64("1_000"), Ok(1000));
        assert_eq!(parse_u64(" 13 "), Ok(13));
        assert_eq!(parse_u64("0xffff_ffff_ffff_ffff"), Ok(u64::MAX));
    }

    #[test]
    fn refusals_say_why() {
        assert!(parse_u64("").unwrap_err().contains("not a number"));
        assert!(parse_u64("0x").unwrap_err().contains("not a number"));
        assert!(parse_u64("0x_").unwrap_err().contains("not a number"));
        assert!(parse_u64("1f").unwrap_err().contains("write 0x"));
        assert!(parse_u64("0b102").unwrap_err().contains("binary"));
        assert!(parse_u64("-1").unwrap_err().contains("non-negative"));
        assert!(parse_u64("0x1_0000_0000_0000_0000")
            .unwrap_err()
            .contains("64 bits"));
    }
}
