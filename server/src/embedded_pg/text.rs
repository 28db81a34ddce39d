//! Text in and out of PostgreSQL: command output and the server log cut to a readable tail for
//! error messages, postgresql.conf quoting, the socket directory inside a URL.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::process::Output;

/// How much of the server log an error message quotes.
const LOG_TAIL_BYTES: usize = 4096;

pub(super) fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    tail(text.trim_end(), LOG_TAIL_BYTES)
}

pub(super) fn read_log_tail(path: &Path) -> String {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    read_log_since(path, len.saturating_sub(LOG_TAIL_BYTES as u64))
}

/// What the server logged from `offset` on, cut to the last few KiB.
pub(super) fn read_log_since(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => tail(String::from_utf8_lossy(&bytes).trim_end(), LOG_TAIL_BYTES),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// The last `max` bytes of `text`, starting at a line boundary.
fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(nl) => format!("...\n{}", &cut[nl + 1..]),
        None => cut.to_owned(),
    }
}

/// A string literal for postgresql.conf, whose parser treats both `'` and `\` specially.
pub(super) fn conf_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// Percent-encodes a path for a URL query value, keeping `/` readable.
pub(super) fn percent_encode(s: &OsStr) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A word for a POSIX shell: single-quoted, with each `'` written as `'\''`.
pub(super) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_tails() {
        assert_eq!(conf_quote(r"/a'b\c"), r"/a''b\\c");
        assert_eq!(percent_encode(OsStr::new("/srv/a b&c")), "/srv/a%20b%26c");
        assert_eq!(tail("one\ntwo\nthree", 7), "...\nthree");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
