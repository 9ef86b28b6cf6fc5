//! Unix socketpairs with data queued both ways: a byte stream, and datagram and
//! seqpacket pairs whose message boundaries must survive.

use std::os::fd::RawFd;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::common::{Checker, Env, Scenario, at, pattern, place};

/// (g) Three socketpairs. Stream 10/11: 100 + 200 bytes queued for 11, 50 for 10.
/// Datagram 12/13: messages of 1, 10, 100 and 1000 bytes for 13, one of 7 for 12.
/// Seqpacket 14/15: 5, 500 and 5000 bytes for 15, 3 for 14.
pub struct Socketpairs;

/// Socketpair: (first fd, type, messages for the second fd, messages for the first).
fn pairs() -> [(RawFd, SocketType, Vec<usize>, Vec<usize>); 3] {
    [
        (10, SocketType::STREAM, vec![100, 200], vec![50]),
        (12, SocketType::DGRAM, vec![1, 10, 100, 1000], vec![7]),
        (14, SocketType::SEQPACKET, vec![5, 500, 5000], vec![3]),
    ]
}

/// Message `i` of `len` bytes sent to descriptor `to`.
fn message(to: RawFd, i: usize, len: usize) -> Vec<u8> {
    pattern(to as u64 * 100 + i as u64, len)
}

impl Scenario for Socketpairs {
    fn prepare(&self, _env: &Env) -> anyhow::Result<()> {
        for (a, ty, to_b, to_a) in pairs() {
            let (x, y) =
                rustix::net::socketpair(AddressFamily::UNIX, ty, SocketFlags::CLOEXEC, None)?;
            place(x, a, false)?;
            place(y, a + 1, false)?;
            for (from, to, lens) in [(a, a + 1, &to_b), (a + 1, a, &to_a)] {
                for (i, &len) in lens.iter().enumerate() {
                    let m = message(to, i, len);
                    let n = rustix::net::send(at(from), &m, SendFlags::empty())?;
                    anyhow::ensure!(n == m.len(), "short send {n} of {len}");
                }
            }
        }
        Ok(())
    }

    fn fds(&self, _role: usize) -> Vec<RawFd> {
        (10..=15).collect()
    }

    fn check(&self, _role: usize, c: &mut Checker) {
        c.stdio();
        c.fd_set(&self.fds(0));
        for (a, ty, to_b, to_a) in pairs() {
            for (fd, lens) in [(a + 1, &to_b), (a, &to_a)] {
                c.cloexec(fd, false);
                c.flags(fd, rustix::fs::OFlags::RDWR);
                if let Some(got) = c.ok(
                    format_args!("fd {fd}: SO_TYPE"),
                    rustix::net::sockopt::socket_type(at(fd)),
                ) {
                    c.eq(format_args!("fd {fd}: socket type"), got, ty);
                }
                let Some(got) = receive_all(c, fd) else {
                    continue;
                };
                let want: Vec<Vec<u8>> = lens
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| message(fd, i, len))
                    .collect();
                if ty == SocketType::STREAM {
                    c.bytes(
                        format_args!("fd {fd}: queued bytes"),
                        &got.concat(),
                        &want.concat(),
                    );
                } else {
                    let got_lens: Vec<usize> = got.iter().map(Vec::len).collect();
                    c.eq(
                        format_args!("fd {fd}: queued message lengths"),
                        got_lens,
                        lens.clone(),
                    );
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        c.bytes(format_args!("fd {fd}: message {i}"), g, w);
                    }
                }
            }
            // Still a connected pair.
            let sent = rustix::net::send(at(a), b"ping", SendFlags::DONTWAIT);
            c.ok(format_args!("fd {a}: send"), sent);
            if let Some(got) = receive_all(c, a + 1) {
                c.eq(
                    format_args!("fd {}: ping", a + 1),
                    got.concat(),
                    b"ping".to_vec(),
                );
            }
        }
    }
}

/// Receives every queued message of `fd` without blocking, one `recv` each.
fn receive_all(c: &mut Checker, fd: RawFd) -> Option<Vec<Vec<u8>>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match rustix::net::recv(at(fd), &mut buf[..], RecvFlags::DONTWAIT) {
            Ok((n, _)) => {
                if n == 0 {
                    return Some(got);
                }
                got.push(buf[..n].to_vec());
            }
            Err(Errno::AGAIN) => return Some(got),
            Err(Errno::INTR) => {}
            Err(e) => {
                c.fail(format!("fd {fd}: recv: {e}"));
                return None;
            }
        }
    }
}
