//! Rendering shared by the subcommands: open-file flags, previews of pending bytes, packet
//! lists, sizes and times. Pure functions from values to text.

use std::fmt::Write as _;

/// Status flags of an open file, decoded: `O_WRONLY|O_NONBLOCK|O_DIRECT`. Bits this table
/// does not know are shown in hex, so nothing is hidden.
pub fn open_flags(bits: u32) -> String {
    const NAMED: &[(libc::c_int, &str)] = &[
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_ASYNC, "O_ASYNC"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_NOATIME, "O_NOATIME"),
        // The kernel sets O_LARGEFILE on every 64-bit open; libc defines it as 0 there.
        (0o100000, "O_LARGEFILE"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    let mode = match bits as libc::c_int & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let mut parts = vec![mode.to_owned()];
    let mut rest = bits & !(libc::O_ACCMODE as u32);
    for &(flag, name) in NAMED {
        let flag = flag as u32;
        // O_SYNC includes O_DSYNC's bit: name each only when all its bits are there.
        if flag != 0 && rest & flag == flag {
            parts.push(name.to_owned());
            rest &= !flag;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#o}"));
    }
    parts.join("|")
}

/// Packet lengths as `[512, 4096, 17]`, abbreviated in the middle when there are many.
pub fn packet_list(lengths: &[u32]) -> String {
    const HEAD: usize = 8;
    const TAIL: usize = 4;
    let show = |s: &[u32]| s.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    if lengths.len() <= HEAD + TAIL {
        format!("[{}]", show(lengths))
    } else {
        let skipped = lengths.len() - HEAD - TAIL;
        format!(
            "[{}, ... {skipped} more ..., {}]",
            show(&lengths[..HEAD]),
            show(&lengths[lengths.len() - TAIL..])
        )
    }
}

/// A byte count with a binary-unit approximation when large: `24576 (24.0 KiB)`.
pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{n} B ({v:.1} {unit})")
}

/// Whether bytes read as text: UTF-8 (a sequence cut at the end is fine) without control
/// characters other than tab, newline and carriage return.
fn is_text(data: &[u8]) -> bool {
    let valid = match std::str::from_utf8(data) {
        Ok(s) => s,
        // A preview may cut a character in two; only damage before the cut counts.
        Err(e) if e.error_len().is_none() => match std::str::from_utf8(&data[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
}

/// A preview of up to `limit` bytes of `data`, as lines ready to print (each already
/// indented by `indent`): text as one quoted, escaped string per line of input; anything
/// else as a hexdump (offset, 16 bytes in hex, ASCII column).
pub fn preview(data: &[u8], limit: usize, indent: &str) -> Vec<String> {
    let shown = &data[..data.len().min(limit)];
    let mut lines = Vec::new();
    if shown.is_empty() {
        lines.push(format!("{indent}(empty)"));
        return lines;
    }
    if is_text(shown) {
        let text = String::from_utf8_lossy(shown);
        for line in text.split_inclusive('\n') {
            lines.push(format!("{indent}\"{}\"", line.escape_debug()));
        }
    } else {
        for (i, chunk) in shown.chunks(16).enumerate() {
            let mut line = format!("{indent}{:08x}  ", i * 16);
            for j in 0..16 {
                match chunk.get(j) {
                    Some(b) => write!(line, "{b:02x} ").unwrap_or(()),
                    None => line.push_str("   "),
                }
                if j == 7 {
                    line.push(' ');
                }
            }
            line.push_str(" |");
            line.extend(chunk.iter().map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            }));
            line.push('|');
            lines.push(line);
        }
    }
    if data.len() > shown.len() {
        lines.push(format!(
            "{indent}... {} more bytes",
            data.len() - shown.len()
        ));
    }
    lines
}

/// Milliseconds since the Unix epoch as `2025-01-31 12:34:56.789 UTC`.
pub fn unix_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decode() {
        let bits = (libc::O_WRONLY | libc::O_NONBLOCK | libc::O_DIRECT) as u32;
        assert_eq!(open_flags(bits), "O_WRONLY|O_NONBLOCK|O_DIRECT");
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(
            open_flags(libc::O_RDWR as u32 | 0o4000000000),
            "O_RDWR|0o4000000000"
        );
    }

    #[test]
    fn packets_abbreviate() {
        assert_eq!(packet_list(&[1, 2, 3]), "[1, 2, 3]");
        let many: Vec<u32> = (1..=20).collect();
        assert_eq!(
            packet_list(&many),
            "[1, 2, 3, 4, 5, 6, 7, 8, ... 8 more ..., 17, 18, 19, 20]"
        );
    }

    #[test]
    fn previews() {
        assert_eq!(preview(b"hi\nthere", 256, ""), ["\"hi\\n\"", "\"there\""]);
        let bin = preview(&[0u8, 1, 2, 0xff], 256, "");
        assert_eq!(bin.len(), 1);
        assert!(bin[0].starts_with("00000000  00 01 02 ff"));
        assert!(bin[0].ends_with("|....|"));
        let long = preview(&[b'a'; 300], 256, "  ");
        assert_eq!(long.last().unwrap(), "  ... 44 more bytes");
    }

    #[test]
    fn times() {
        assert_eq!(unix_ms(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(unix_ms(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
    }
}
