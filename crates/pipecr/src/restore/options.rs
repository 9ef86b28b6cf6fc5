//! What the caller of a restore chooses: the options of a tree restore and the sources it
//! supplies for external ends (`--inherit-fd [PID:]FD=SOURCE`, `--shell-job`). Plain data
//! and its parsing, below every restore step: [`super::external`] and [`super::process`]
//! read it, and the CLI builds it.

use std::fmt;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

/// Choices a caller makes for a tree restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Sources for the descriptors that led outside the tree (`--inherit-fd`); those at
    /// fds 0-2 without one get the caller's own ([`super::external::resolve`]).
    pub inherit: Vec<Inherit>,
    /// The tree is a job of an interactive shell (`--shell-job`): it joins the caller's
    /// session (its own was the shell's, which is not restored), keeps its own process
    /// group, and every descriptor of its old terminal gets the caller's terminal.
    pub shell_job: bool,
    /// Addresses (a path, `@name` for an abstract name) that unix sockets whose peer was
    /// outside the tree connect to again (`--external-unix`), as [`Source::Reconnect`].
    pub external_unix: Vec<String>,
}

/// Where the descriptor for an external end comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// One of the restorer's own descriptors (`fd:N`), shared with the restored tree.
    Fd(RawFd),
    /// A path, opened with the saved end's access mode (created if it is written to).
    Path(PathBuf),
    /// `/dev/null`: reads see end of file, writes vanish.
    Null,
    /// A new unix socket of the saved type, bound to the saved name, connected to the
    /// saved peer's address (`--external-unix`); not written in `--inherit-fd`.
    Reconnect,
}

impl FromStr for Source {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "null" {
            return Ok(Source::Null);
        }
        if let Some(n) = s.strip_prefix("fd:") {
            return n
                .parse::<RawFd>()
                .ok()
                .filter(|n| *n >= 0)
                .map(Source::Fd)
                .ok_or_else(|| format!("{s:?}: fd:N needs a descriptor number"));
        }
        if s.is_empty() {
            return Err("an empty source: give fd:N, a path, or null".to_owned());
        }
        Ok(Source::Path(PathBuf::from(s)))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Fd(n) => write!(f, "fd:{n}"),
            Source::Path(p) => write!(f, "{}", p.display()),
            Source::Null => write!(f, "null"),
            Source::Reconnect => write!(f, "a new connection"),
        }
    }
}

/// One request `[PID:]FD=SOURCE`: the external end(s) held at original fd number `fd`
/// (by process `pid` only, when given) get a descriptor from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherit {
    /// The process, or every process holding an external end at `fd`.
    pub pid: Option<i32>,
    /// The original descriptor number.
    pub fd: RawFd,
    /// Where the descriptor comes from.
    pub source: Source,
}

impl FromStr for Inherit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (target, source) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected [PID:]FD=SOURCE"))?;
        let number = |n: &str, what: &str| {
            n.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("{s:?}: {n:?} is not a {what}"))
        };
        let (pid, fd) = match target.split_once(':') {
            Some((pid, fd)) => (Some(number(pid, "pid")?), number(fd, "descriptor number")?),
            None => (None, number(target, "descriptor number")?),
        };
        Ok(Inherit {
            pid,
            fd,
            source: source.parse()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            "1=fd:5".parse::<Inherit>(),
            Ok(Inherit {
                pid: None,
                fd: 1,
                source: Source::Fd(5)
            })
        );
        assert_eq!(
            "42:0=null".parse::<Inherit>(),
            Ok(Inherit {
                pid: Some(42),
                fd: 0,
                source: Source::Null
            })
        );
        assert_eq!(
            "2=/tmp/log".parse::<Inherit>().map(|r| r.source),
            Ok(Source::Path("/tmp/log".into()))
        );
        for bad in [
            "1", "x=null", "1=", "1=fd:", "1=fd:-3", "-1=null", "a:1=null",
        ] {
            assert!(bad.parse::<Inherit>().is_err(), "{bad}");
        }
    }
}
