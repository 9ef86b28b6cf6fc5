//! TCP sockets, IPv4 and IPv6: never connected (maybe bound), listening, and established
//! connections, which come back with `TCP_REPAIR` (tcp(7); CRIU's soccr library was the
//! reference for the order of the steps).
//!
//! **Dump of a connection.** First the *network lock*: an nftables table of our own
//! (family `inet`, named `pipecr_lock_<pid>_<n>`, one per dump) whose input and output
//! chains drop every packet of the connection, both directions. Then the socket goes
//! into repair mode (on pipecr's `pidfd_getfd` copy: the mode belongs to the socket), and
//! everything is read: the state (`TCP_INFO`), the sequence numbers (`TCP_QUEUE_SEQ` of
//! each queue), the bytes sent and not acknowledged and those received and not read
//! (`recv(MSG_PEEK)` of each queue in repair mode; `SIOCOUTQNSD` tells which were never
//! sent), the MSS, window scales, SACK and timestamps negotiated (`TCP_REPAIR_OPTIONS` at
//! restore), the timestamp clock, `TCP_REPAIR_WINDOW` and the options a program sets
//! ([`super::inet::read_options`]). Nothing is consumed.
//!
//! **Until the dump ends** the sockets stay in repair mode and the rule stays, held by a
//! [`DumpHold`]. When the tree is killed, its sockets close in repair mode: the kernel
//! sends neither FIN nor RST, and forgets them. The rule stays so that what the peer
//! sends meanwhile (data, keepalives, retransmissions) is dropped instead of answered
//! with a reset by a kernel that no longer knows the connection. When the tree runs on
//! (a failed dump, or `--leave-running`), repair mode is turned off and the table deleted
//! before it resumes: the peer's retransmissions then arrive as if after a delay.
//!
//! **Restore** creates the socket in repair mode, binds it (repair mode lets it share a
//! port with a listener), sets both sequence numbers, connects (no SYN in repair mode:
//! the socket is established at once), sets the options negotiated, refills the receive
//! queue and the sent part of the send queue in repair mode, sends the never-sent part
//! normally (dropped by the lock, sent again later by the kernel) and sets the window.
//! It stays in repair mode while the rest of the tree is restored, so that a restore
//! that fails closes it silently, leaving the connection to a second try. Once every
//! process is ready, just before they are released ([`FileKind::before_release`]),
//! pipecr takes each connection out of repair mode through a process holding it
//! (`pidfd_getfd`; the kernel then sends a window probe), sets its options, and deletes
//! the table: from then on the peer's retransmissions reach the restored socket and are
//! acknowledged.
//!
//! **What the host needs**: CAP_NET_ADMIN (repair mode, nftables) and the `nft` program
//! (nftables), in the network namespace of the tree. If pipecr is killed between the
//! dump's rule and the restore's removal, the table stays: `nft list tables` shows it
//! (`pipecr show` prints its name) and `nft delete table inet NAME` lets the peer's
//! packets through again (it then gets a reset, as with any connection whose end is
//! gone). A restore that fails leaves the table in place, so that a second restore can
//! still take the connection over.
//!
//! **Half-closed connections** (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING) are
//! saved the same way; the FIN each side sent takes a sequence number but no byte, so
//! restore builds the connection as established one sequence number lower and puts the
//! FINs back in the order the state diagram met them: ours with `shutdown(SHUT_WR)` in
//! repair mode (as already sent when the peer acknowledged it), the peer's with a forged
//! FIN segment from the peer's address through a raw socket, and the peer's
//! acknowledgement of our FIN with a forged ACK. The forged segments carry a mark
//! (`FORGED_MARK`, 0x70636b31) the lock lets through.
//!
//! **Connections waiting to be accepted** have a server end no descriptor holds, which
//! only `accept` reaches, and the kernel offers no way to put a connection back into a
//! listener's queue. When the client end is in the tree too (loopback), the dump takes
//! them from the queue once every file is saved (`finish`), reads what the server end
//! received, and saves the client end to connect again at restore: a real handshake
//! with the restored listener (these connections are left out of the lock), then those
//! bytes and the ones the client had not had acknowledged are sent as new data, so the
//! program's `accept` returns a connection carrying the same stream. Refused with
//! `--leave-running` (the tree would lose them) and when a client is outside the tree,
//! both before anything is taken; a dump that fails after they were taken leaves the
//! tree without them.
//!
//! **Refused**: SYN_SENT, SYN_RECV, and a socket whose connection ended (CLOSE after
//! segments, or an error pending: it would come back as a new socket).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use pipecr_image::proto::{self, open_file};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt};

use super::inet::{self, AF_INET, AF_INET6};
use super::kind::{
    Description, DumpEnd, DumpHold, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved,
};
use crate::sys::inet as raw;

/// TCP sockets (`AF_INET`/`AF_INET6`, `SOCK_STREAM`).
pub struct TcpSocketKind;

/// The kernel's TCP states (`include/net/tcp_states.h`).
const TCP_ESTABLISHED: u32 = 1;
const TCP_FIN_WAIT1: u32 = 4;
const TCP_FIN_WAIT2: u32 = 5;
const TCP_CLOSE_WAIT: u32 = 8;
const TCP_LAST_ACK: u32 = 9;
const TCP_CLOSING: u32 = 11;

/// The states of a connection this kind saves: established, or half closed on either
/// side or both (a FIN sent, received, or both, as the TCP state diagram goes).
fn connected(state: u32) -> bool {
    matches!(
        state,
        TCP_ESTABLISHED
            | TCP_FIN_WAIT1
            | TCP_FIN_WAIT2
            | TCP_CLOSE_WAIT
            | TCP_LAST_ACK
            | TCP_CLOSING
    )
}

/// Our FIN is in the send queue (sent; in FIN_WAIT2 also acknowledged).
fn fin_sent(state: u32) -> bool {
    matches!(
        state,
        TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSING | TCP_LAST_ACK
    )
}

/// The peer's FIN is in the receive queue.
fn fin_received(state: u32) -> bool {
    matches!(state, TCP_CLOSE_WAIT | TCP_LAST_ACK | TCP_CLOSING)
}

/// `SO_MARK` of the packets restore forges (a FIN, an ACK) to rebuild a half-closed
/// connection: the network lock lets them through.
const FORGED_MARK: u32 = 0x7063_6b31;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

/// `tcp_info.tcpi_options` bits.
const TCPI_OPT_TIMESTAMPS: u32 = 1;
const TCPI_OPT_SACK: u32 = 2;
const TCPI_OPT_WSCALE: u32 = 4;

/// Bytes sent per `send` when a queue is refilled in repair mode (the kernel makes one
/// linear buffer per call there, so very large calls fail).
const REFILL_CHUNK: usize = 64 << 10;

/// Names a TCP state for messages.
fn state_name(state: u32) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => "unknown",
    }
}

/// The network lock of one dump and the sockets it put into repair mode: this kind's
/// state in the [`DumpSink`], moved into a [`DumpHold`] by [`FileKind::finish`].
#[derive(Default)]
struct Repairs {
    /// The nftables table, once created.
    table: Option<String>,
    /// pipecr's copies of the sockets in repair mode.
    sockets: Vec<OwnedFd>,
    /// The connections locked so far, as (lower end, higher end): both ends of a
    /// loopback connection in the tree need one set of rules.
    locked: std::collections::BTreeSet<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// The connections whose server end waits in the accept queue of a listener of the
    /// tree, as (lower end, higher end), once looked up: not locked (restore connects
    /// them again for real).
    pending: Option<std::collections::BTreeSet<(std::net::SocketAddr, std::net::SocketAddr)>>,
    /// Listeners of the tree with connections waiting: (inode, pid, fd, our copy).
    listeners: Vec<(u64, i32, i32, OwnedFd)>,
    /// The client ends of those connections met so far: (local, peer) -> (send_seq,
    /// unacknowledged bytes).
    clients:
        std::collections::BTreeMap<(std::net::SocketAddr, std::net::SocketAddr), (u32, Vec<u8>)>,
}

type Conn = (std::net::SocketAddr, std::net::SocketAddr);

/// (lower end, higher end) of a connection, whichever end it is seen from.
fn conn_key((a, b): Conn) -> Conn {
    (a.min(b), a.max(b))
}

impl Repairs {
    /// Turns repair mode off and deletes the table: the tree runs on.
    fn undo(&mut self) {
        for s in self.sockets.drain(..) {
            let _ = raw::set_int(s.as_fd(), libc::IPPROTO_TCP, raw::TCP_REPAIR, 0);
        }
        if let Some(t) = self.table.take() {
            let _ = delete_table(&t);
        }
    }
}

impl Drop for Repairs {
    fn drop(&mut self) {
        // A dump that fails before `finish` drops the sink, and this with it.
        self.undo();
    }
}

impl DumpHold for Repairs {
    fn release(mut self: Box<Self>, end: DumpEnd) {
        match end {
            DumpEnd::RunsOn => self.undo(),
            DumpEnd::Killed => {
                // The sockets close in repair mode (silently) with our copies; the
                // table stays until the restore.
                self.sockets.clear();
                self.table = None;
                self.locked.clear();
            }
        }
    }
}

/// Runs `nft` with `script` on its standard input.
fn nft(script: &str) -> io::Result<()> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run nft (nftables): {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Deletes the lock table `name`; one already gone is not an error.
fn delete_table(name: &str) -> io::Result<()> {
    match nft(&format!("delete table inet {name}\n")) {
        Err(e) if e.to_string().contains("No such file or directory") => Ok(()),
        r => r,
    }
}

/// An nftables match of packets from `a` to `b`.
fn nft_match(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    let ip = if a.is_ipv4() { "ip" } else { "ip6" };
    format!(
        "{ip} saddr {} tcp sport {} {ip} daddr {} tcp dport {}",
        a.ip(),
        a.port(),
        b.ip(),
        b.port()
    )
}

/// Adds the rules dropping the packets of every connection of `conns` not locked yet,
/// in both directions, in one `nft` run, creating the dump's table first. Returns the
/// table's name.
fn lock(
    repairs: &mut Repairs,
    conns: &[(std::net::SocketAddr, std::net::SocketAddr)],
) -> io::Result<String> {
    static DUMPS: AtomicU32 = AtomicU32::new(0);
    let key = conn_key;
    let mut script = String::new();
    let table = match &repairs.table {
        Some(t) => t.clone(),
        None => {
            let t = format!(
                "pipecr_lock_{}_{}",
                std::process::id(),
                DUMPS.fetch_add(1, Ordering::Relaxed)
            );
            script.push_str(&format!(
                "add table inet {t}\n\
                 add chain inet {t} input {{ type filter hook input priority -300; policy accept; }}\n\
                 add chain inet {t} output {{ type filter hook output priority -300; policy accept; }}\n\
                 add rule inet {t} input meta mark {FORGED_MARK:#x} accept\n\
                 add rule inet {t} output meta mark {FORGED_MARK:#x} accept\n"
            ));
            t
        }
    };
    let mut new = Vec::new();
    for &c in conns {
        let k = key(c);
        if repairs.locked.contains(&k)
            || new.contains(&k)
            || repairs.pending.as_ref().is_some_and(|p| p.contains(&k))
        {
            continue;
        }
        new.push(k);
        for chain in ["input", "output"] {
            for (a, b) in [(k.0, k.1), (k.1, k.0)] {
                script.push_str(&format!(
                    "add rule inet {table} {chain} {} drop\n",
                    nft_match(a, b)
                ));
            }
        }
    }
    if !script.is_empty() {
        nft(&script)?;
    }
    repairs.table = Some(table.clone());
    repairs.locked.extend(new);
    Ok(table)
}

/// The connections whose server end waits in the accept queue of a listener the tree
/// holds (a socket without a file, on a listener's port), as [`conn_key`]s.
fn pending_connections(sink: &DumpSink<'_>) -> std::collections::BTreeSet<Conn> {
    let mut pending = std::collections::BTreeSet::new();
    for family in [AF_INET, AF_INET6] {
        let Ok(listening) = inet::inet_diag(family, libc::IPPROTO_TCP as u8, 1 << TCP_LISTEN)
        else {
            continue;
        };
        let ours: Vec<std::net::SocketAddr> = listening
            .iter()
            .filter(|d| !sink.descriptors_of_inode(u64::from(d.inode)).is_empty())
            .map(|d| d.local)
            .collect();
        if ours.is_empty() {
            continue;
        }
        let Ok(est) = inet::inet_diag(family, libc::IPPROTO_TCP as u8, 1 << TCP_ESTABLISHED) else {
            continue;
        };
        for d in est.iter().filter(|d| d.inode == 0) {
            if ours.iter().any(|l| {
                l.port() == d.local.port() && (l.ip().is_unspecified() || l.ip() == d.local.ip())
            }) {
                pending.insert(conn_key((d.local, d.remote)));
            }
        }
    }
    pending
}

/// Every established TCP connection of the network namespace whose socket some
/// descriptor of the tree holds: locked together when the first is met, so that a dump
/// runs `nft` once rather than once per connection.
fn tree_connections(sink: &DumpSink<'_>) -> Vec<(std::net::SocketAddr, std::net::SocketAddr)> {
    let mut conns = Vec::new();
    for family in [AF_INET, AF_INET6] {
        // Best effort: a connection missed here is locked on its own when met.
        let states = [
            TCP_ESTABLISHED,
            TCP_FIN_WAIT1,
            TCP_FIN_WAIT2,
            TCP_CLOSE_WAIT,
            TCP_LAST_ACK,
            TCP_CLOSING,
        ]
        .iter()
        .fold(0, |m, s| m | 1 << s);
        let Ok(found) = inet::inet_diag(family, libc::IPPROTO_TCP as u8, states) else {
            continue;
        };
        for d in found {
            if !sink.descriptors_of_inode(u64::from(d.inode)).is_empty() {
                conns.push((d.local, d.remote));
            }
        }
    }
    conns
}

impl FileKind for TcpSocketKind {
    fn name(&self) -> &'static str {
        "TCP socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        inet::is_inet_socket(
            &file.link,
            file.file.as_fd(),
            SocketType::STREAM,
            libc::IPPROTO_TCP,
        )
    }

    fn dump(&self, file: &LiveFile, sink: &mut DumpSink<'_>) -> Result<open_file::Kind, FileError> {
        let fail = |op, source: io::Error| FileError::Dump {
            pid: file.pid,
            fd: file.fd,
            what: file.link.clone(),
            op,
            source,
        };
        let unsupported = |kind: String| FileError::Unsupported {
            pid: file.pid,
            fd: file.fd,
            kind,
        };
        let fd = file.file.as_fd();
        let family = if sockopt::socket_domain(fd).map_err(|e| fail("SO_DOMAIN", e.into()))?
            == AddressFamily::INET6
        {
            AF_INET6
        } else {
            AF_INET
        };
        let state = tcp_info(fd).map_err(|e| fail("getsockopt(TCP_INFO)", e))?[0] as u32;
        let local = inet::local_addr(fd).map_err(|e| fail("getsockname", e))?;
        let peer = inet::peer_addr(fd).map_err(|e| fail("getpeername", e))?;
        let options = inet::read_options(fd, family, true).map_err(|e| fail("getsockopt", e))?;
        let mut saved = proto::TcpSocket {
            inode: file.stat.st_ino,
            family,
            state,
            local: local.map(inet::to_saved),
            peer: peer.map(inet::to_saved),
            bound: local.is_some(),
            options: Some(options),
            ..Default::default()
        };
        match state {
            TCP_CLOSE => {
                // A socket whose connection ended (closed, reset, or failed to connect)
                // is in CLOSE too, but reads end of file or an error where a new one
                // says ENOTCONN: only a never-connected socket is saved.
                let segments = tcp_segments(fd).map_err(|e| fail("getsockopt(TCP_INFO)", e))?;
                let error = sockopt::socket_error(fd).map_err(|e| fail("SO_ERROR", e.into()))?;
                if segments != (0, 0) || error.is_err() {
                    return Err(unsupported(format!(
                        "TCP socket {} whose connection ended (only never-connected sockets in state CLOSE are restored)",
                        inet::show(saved.local.as_ref())
                    )));
                }
            }
            TCP_LISTEN => {
                let diag = inet::inet_diag(family, libc::IPPROTO_TCP as u8, 1 << TCP_LISTEN)
                    .map_err(|e| fail("sock_diag(inet_diag)", e))?;
                let me = diag
                    .iter()
                    .find(|d| u64::from(d.inode) == file.stat.st_ino)
                    .ok_or_else(|| {
                        fail(
                            "sock_diag(inet_diag)",
                            io::Error::other("the listening socket is not in the dump"),
                        )
                    })?;
                if me.recv_queue > 0 {
                    if sink.options.leave_running {
                        return Err(unsupported(format!(
                            "TCP socket listening on {} with {} connection(s) waiting to be accepted, in a tree that runs on (saving them takes them from the queue)",
                            inet::show(saved.local.as_ref()),
                            me.recv_queue
                        )));
                    }
                    // Taken from the queue once every file is saved (`finish`).
                    let copy = file.file.try_clone().map_err(|e| fail("dup", e))?;
                    sink.state::<Repairs>().listeners.push((
                        file.stat.st_ino,
                        file.pid,
                        file.fd,
                        copy,
                    ));
                }
                saved.backlog = me.send_queue;
            }
            state if connected(state) => {
                let (Some(l), Some(p)) = (local, peer) else {
                    return Err(fail(
                        "getpeername",
                        io::Error::other("a connection without addresses"),
                    ));
                };
                if sink
                    .peek_state::<Repairs>()
                    .is_none_or(|r| r.pending.is_none())
                {
                    let pending = pending_connections(sink);
                    sink.state::<Repairs>().pending = Some(pending);
                }
                let mut conns = vec![(l, p)];
                if sink
                    .peek_state::<Repairs>()
                    .is_none_or(|r| r.table.is_none())
                {
                    conns.extend(tree_connections(sink));
                }
                let repairs = sink.state::<Repairs>();
                let table = lock(repairs, &conns).map_err(|e| fail("network lock (nft)", e))?;
                saved.network_lock = table;
                let copy = file.file.try_clone().map_err(|e| fail("dup", e))?;
                raw::set_int(fd, libc::IPPROTO_TCP, raw::TCP_REPAIR, 1)
                    .map_err(|e| fail("setsockopt(TCP_REPAIR, 1)", e))?;
                sink.state::<Repairs>().sockets.push(copy);
                let conn = read_connection(fd, state).map_err(|(op, e)| fail(op, e))?;
                let (conn, send, recv) = conn;
                let mut conn = conn;
                let repairs = sink.state::<Repairs>();
                if repairs
                    .pending
                    .as_ref()
                    .is_some_and(|set| set.contains(&conn_key((l, p))))
                {
                    repairs
                        .clients
                        .insert((l, p), (conn.send_seq, send.clone()));
                }
                if !send.is_empty() {
                    conn.send_queue =
                        Some(sink.writer.raw(pipecr_image::SOCKETS_DATA)?.append(&send)?);
                }
                if !recv.is_empty() {
                    conn.recv_queue =
                        Some(sink.writer.raw(pipecr_image::SOCKETS_DATA)?.append(&recv)?);
                }
                saved.connection = Some(conn);
            }
            other => {
                return Err(unsupported(format!(
                    "TCP connection {} -> {} in state {} (only ESTABLISHED connections are restored)",
                    inet::show(saved.local.as_ref()),
                    inet::show(saved.peer.as_ref()),
                    state_name(other)
                )));
            }
        }
        Ok(open_file::Kind::TcpSocket(saved))
    }

    fn finish(
        &self,
        files: &mut [proto::OpenFile],
        sink: &mut DumpSink<'_>,
    ) -> Result<(), FileError> {
        take_pending(files, sink)?;
        let repairs = std::mem::take(sink.state::<Repairs>());
        if repairs.table.is_some() || !repairs.sockets.is_empty() {
            sink.hold(Box::new(repairs));
        }
        Ok(())
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::TcpSocket(_))
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::TcpSocket(s)) = &file.kind else {
            return Err(invalid(file.id, "not a TCP socket"));
        };
        let what = format!(
            "TCP socket {} -> {}",
            inet::show(s.local.as_ref()),
            inet::show(s.peer.as_ref())
        );
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: what.clone(),
            op,
            source,
        };
        let af = match s.family {
            AF_INET => AddressFamily::INET,
            AF_INET6 => AddressFamily::INET6,
            f => return Err(invalid(file.id, &format!("address family {f}"))),
        };
        let local = inet::from_saved(s.local.as_ref()).map_err(|e| invalid(file.id, &e))?;
        let peer = inet::from_saved(s.peer.as_ref()).map_err(|e| invalid(file.id, &e))?;
        let default_opts = proto::InetOptions::default();
        let opts = s.options.as_ref().unwrap_or(&default_opts);
        let sock = rustix::net::socket_with(af, SocketType::STREAM, SocketFlags::CLOEXEC, None)
            .map_err(|e| fail("socket", e.into()))?;
        let fd = sock.as_fd();
        match s.state {
            TCP_CLOSE | TCP_LISTEN => {
                inet::apply_options(fd, opts, s.family, true, false)
                    .map_err(|(op, e)| fail(op, e))?;
                if let Some(l) = local {
                    rustix::net::bind(fd, &l).map_err(|e| fail("bind", e.into()))?;
                }
                if s.state == TCP_LISTEN {
                    let backlog = i32::try_from(s.backlog).unwrap_or(i32::MAX);
                    rustix::net::listen(fd, backlog).map_err(|e| fail("listen", e.into()))?;
                }
            }
            TCP_ESTABLISHED if s.pending_in != 0 => {
                // Connected again for real in `complete`, once its listener listens.
                inet::apply_options(fd, opts, s.family, true, false)
                    .map_err(|(op, e)| fail(op, e))?;
                let Some(l) = local else {
                    return Err(invalid(file.id, "a connection without addresses"));
                };
                rustix::net::bind(fd, &l).map_err(|e| fail("bind", e.into()))?;
                return Ok(sock);
            }
            state if connected(state) => {
                let (Some(l), Some(p)) = (local, peer) else {
                    return Err(invalid(file.id, "a connection without addresses"));
                };
                let Some(c) = &s.connection else {
                    return Err(invalid(file.id, "a connection without its state"));
                };
                let send = read_data(file.id, _ctx.image, c.send_queue.as_ref())?;
                let recv = read_data(file.id, _ctx.image, c.recv_queue.as_ref())?;
                if (c.unsent as usize) > send.len() {
                    return Err(invalid(file.id, "more unsent bytes than queued"));
                }
                repair_connection(fd, s.family, state, opts, l, p, c, &send, &recv)
                    .map_err(|(op, e)| fail(op, e))?;
            }
            other => {
                return Err(invalid(
                    file.id,
                    &format!("a TCP socket in state {}", state_name(other)),
                ));
            }
        }
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn complete(&self, file: &proto::OpenFile, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let Some(open_file::Kind::TcpSocket(s)) = &file.kind else {
            return Ok(());
        };
        if s.pending_in == 0 {
            return Ok(());
        }
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: format!(
                "TCP connection {} -> {} (waiting to be accepted)",
                inet::show(s.local.as_ref()),
                inet::show(s.peer.as_ref())
            ),
            op,
            source,
        };
        let peer = inet::from_saved(s.peer.as_ref())
            .map_err(|e| invalid(file.id, &e))?
            .ok_or_else(|| invalid(file.id, "a connection without its peer"))?;
        let data = match s.connection.as_ref().and_then(|c| c.send_queue.as_ref()) {
            Some(d) => ctx.image.read_data(d)?,
            None => Vec::new(),
        };
        let Some(fd) = ctx.opened(file.id) else {
            return Err(invalid(file.id, "not created"));
        };
        // A real handshake with the listener restored beside it (the network lock
        // leaves these connections alone): its accept returns the other end.
        rustix::net::connect(fd, &peer).map_err(|e| fail("connect", e.into()))?;
        let default_opts = proto::InetOptions::default();
        let opts = s.options.as_ref().unwrap_or(&default_opts);
        inet::apply_tcp_options(fd, opts).map_err(|(op, e)| fail(op, e))?;
        if !data.is_empty() {
            // Room for all of it, sent as the program would have: nothing blocks.
            let room = (opts.sndbuf as usize / 2).max(data.len() + (64 << 10));
            sockopt::set_socket_send_buffer_size_force(fd, room)
                .map_err(|e| fail("SO_SNDBUFFORCE", e.into()))?;
            rustix::fs::fcntl_setfl(fd, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
            refill(fd, &data).map_err(|e| fail("send", e))?;
        }
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(fd, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(())
    }

    fn before_release(&self, saved: &Saved<'_>) -> Result<(), FileError> {
        let files = saved.files;
        for file in files {
            let Some(open_file::Kind::TcpSocket(s)) = &file.kind else {
                continue;
            };
            if !connected(s.state) || s.pending_in != 0 {
                continue;
            }
            let fail = |op: &'static str, source: io::Error| FileError::Restore {
                id: file.id,
                what: format!(
                    "TCP connection {} -> {}",
                    inet::show(s.local.as_ref()),
                    inet::show(s.peer.as_ref())
                ),
                op,
                source,
            };
            // Held by no descriptor: nothing was created for it.
            let Some((pid, fd)) = saved.holder(file.id) else {
                continue;
            };
            let sock = fetch(pid, fd).map_err(|e| fail("pidfd_getfd", e))?;
            let default_opts = proto::InetOptions::default();
            leave_repair(
                sock.as_fd(),
                s.family,
                s.options.as_ref().unwrap_or(&default_opts),
            )
            .map_err(|(op, e)| fail(op, e))?;
        }
        let mut tables = std::collections::BTreeMap::new();
        for file in files {
            if let Some(open_file::Kind::TcpSocket(s)) = &file.kind
                && !s.network_lock.is_empty()
            {
                if !valid_table_name(&s.network_lock) {
                    return Err(invalid(file.id, "a malformed network lock name"));
                }
                tables.entry(s.network_lock.clone()).or_insert(file.id);
            }
        }
        for (table, id) in tables {
            delete_table(&table).map_err(|e| FileError::Restore {
                id,
                what: format!("network lock {table}"),
                op: "nft delete table",
                source: e,
            })?;
        }
        Ok(())
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::TcpSocket(s)) = &file.kind else {
            return Description {
                text: "not a TCP socket".into(),
                pipe: None,
            };
        };
        let v = if s.family == AF_INET6 { "v6" } else { "" };
        let text = match s.state {
            TCP_LISTEN => format!(
                "TCP{v} socket listening on {}, backlog {}",
                inet::show(s.local.as_ref()),
                s.backlog
            ),
            state if connected(state) => {
                let c = s.connection.clone().unwrap_or_default();
                let lock = if s.network_lock.is_empty() {
                    String::new()
                } else {
                    format!(", held by nft table inet {}", s.network_lock)
                };
                let st = if state == TCP_ESTABLISHED {
                    String::new()
                } else {
                    format!(" ({})", state_name(state))
                };
                format!(
                    "TCP{v} connection {} -> {}{st}, {} B to send ({} unsent), {} B to read{lock}",
                    inet::show(s.local.as_ref()),
                    inet::show(s.peer.as_ref()),
                    c.send_queue.map_or(0, |d| d.length),
                    c.unsent,
                    c.recv_queue.map_or(0, |d| d.length),
                )
            }
            _ if s.bound => format!("TCP{v} socket bound to {}", inet::show(s.local.as_ref())),
            _ => format!("TCP{v} socket, not bound"),
        };
        Description { text, pipe: None }
    }
}

/// Takes every connection waiting in a listener of the tree from its queue (the tree is
/// killed after this dump: `--leave-running` refuses them), reads what its server end
/// received, and rewrites the record of its client end (which must be in the tree) to
/// connect again at restore and send those bytes then the ones it had not had
/// acknowledged. The server ends are closed in repair mode: nothing is sent.
fn take_pending(files: &mut [proto::OpenFile], sink: &mut DumpSink<'_>) -> Result<(), FileError> {
    let listeners = std::mem::take(&mut sink.state::<Repairs>().listeners);
    if listeners.is_empty() {
        return Ok(());
    }
    // Every waiting connection must have its client in the tree: checked before any is
    // taken from its queue, so that a refusal leaves the tree as it was.
    if sink
        .peek_state::<Repairs>()
        .is_none_or(|r| r.pending.is_none())
    {
        let pending = pending_connections(sink);
        sink.state::<Repairs>().pending = Some(pending);
    }
    let repairs = sink.state::<Repairs>();
    let clients: std::collections::BTreeSet<Conn> =
        repairs.clients.keys().map(|&c| conn_key(c)).collect();
    if let Some(missing) = repairs
        .pending
        .iter()
        .flatten()
        .find(|k| !clients.contains(k))
    {
        let (_, pid, fd, _) = &listeners[0];
        return Err(FileError::Unsupported {
            pid: *pid,
            fd: *fd,
            kind: format!(
                "TCP listener with a connection ({} - {}) waiting to be accepted whose client is outside the tree",
                missing.0, missing.1
            ),
        });
    }
    for (inode, _pid, _fd, listener) in listeners {
        let Some(listener_id) = files.iter().find_map(|f| match &f.kind {
            Some(open_file::Kind::TcpSocket(s)) if s.inode == inode => Some(f.id),
            _ => None,
        }) else {
            continue;
        };
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: listener_id,
            what: format!("connections waiting in TCP listener socket:[{inode}]"),
            op,
            source,
        };
        loop {
            // Only what waits now: the listener itself blocks (its flags are the tree's).
            let mut pfd = [rustix::event::PollFd::new(
                &listener,
                rustix::event::PollFlags::IN,
            )];
            let zero = rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut pfd, Some(&zero)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(fail("poll", e.into())),
            }
            let child = match rustix::net::accept_with(
                &listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(c) => c,
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(fail("accept", e.into())),
            };
            let fd = child.as_fd();
            raw::set_int(fd, libc::IPPROTO_TCP, raw::TCP_REPAIR, 1)
                .map_err(|e| fail("setsockopt(TCP_REPAIR, 1)", e))?;
            let local = inet::local_addr(fd).map_err(|e| fail("getsockname", e))?;
            let peer = inet::peer_addr(fd).map_err(|e| fail("getpeername", e))?;
            let (Some(local), Some(peer)) = (local, peer) else {
                return Err(fail("getpeername", io::Error::other("no addresses")));
            };
            let inq = raw::ioctl_int(fd, raw::SIOCINQ).map_err(|e| fail("ioctl(SIOCINQ)", e))?;
            let (rcv_nxt, mut data) = peek_queue(fd, raw::TCP_RECV_QUEUE, inq.max(0) as usize)
                .map_err(|(op, e)| fail(op, e))?;
            let client = sink.state::<Repairs>().clients.remove(&(peer, local));
            let Some((send_seq, unacked)) = client else {
                return Err(fail(
                    "accept",
                    io::Error::other(format!(
                        "the connection from {peer} has no client in the tree"
                    )),
                ));
            };
            // What the client had not had acknowledged may overlap what the server end
            // received (an ACK not sent yet): keep only what lies beyond.
            let una = send_seq.wrapping_sub(unacked.len() as u32);
            let skip = rcv_nxt.wrapping_sub(una) as usize;
            if skip <= unacked.len() {
                data.extend_from_slice(&unacked[skip..]);
            }
            let data_ref = if data.is_empty() {
                None
            } else {
                Some(sink.writer.raw(pipecr_image::SOCKETS_DATA)?.append(&data)?)
            };
            for f in files.iter_mut() {
                if let Some(open_file::Kind::TcpSocket(s)) = &mut f.kind
                    && inet::from_saved(s.local.as_ref()).ok().flatten() == Some(peer)
                    && inet::from_saved(s.peer.as_ref()).ok().flatten() == Some(local)
                    && let Some(c) = &mut s.connection
                {
                    s.pending_in = listener_id;
                    c.send_queue = data_ref.clone();
                    c.unsent = data.len() as u32;
                    c.recv_queue = None;
                }
            }
        }
    }
    Ok(())
}

/// Our own copy of descriptor `fd` of process `pid` (`pidfd_getfd`).
fn fetch(pid: i32, fd: i32) -> io::Result<OwnedFd> {
    let target = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let pidfd = rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty())?;
    Ok(rustix::process::pidfd_getfd(
        &pidfd,
        fd,
        rustix::process::PidfdGetfdFlags::empty(),
    )?)
}

/// Only what `lock` names a table: an image cannot make restore run another command.
fn valid_table_name(name: &str) -> bool {
    name.starts_with("pipecr_lock_")
        && name.len() < 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn invalid(id: u64, reason: &str) -> FileError {
    FileError::Invalid {
        id,
        reason: reason.to_owned(),
    }
}

/// The bytes of `data` in the image (empty when none were saved).
fn read_data(
    id: u64,
    image: &pipecr_image::Image,
    data: Option<&proto::DataRef>,
) -> Result<Vec<u8>, FileError> {
    let _ = id;
    match data {
        None => Ok(Vec::new()),
        Some(d) => Ok(image.read_data(d)?),
    }
}

/// `TCP_INFO`: the first bytes of `struct tcp_info` (state, ca_state, retransmits,
/// probes, backoff, options, wscales).
fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    let mut buf = [0u8; 104];
    let n = raw::get_bytes(fd, libc::IPPROTO_TCP, raw::TCP_INFO, &mut buf)?;
    if n < 8 {
        return Err(io::Error::other("short tcp_info"));
    }
    let mut head = [0u8; 8];
    head.copy_from_slice(&buf[..8]);
    Ok(head)
}

/// `tcpi_segs_out` and `tcpi_segs_in` of `TCP_INFO`: (0, 0) for a socket that never
/// sent nor received a segment.
fn tcp_segments(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut buf = [0u8; 256];
    let n = raw::get_bytes(fd, libc::IPPROTO_TCP, raw::TCP_INFO, &mut buf)?;
    let word = |at: usize| {
        buf[..n]
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .ok_or_else(|| io::Error::other("short tcp_info"))
    };
    Ok((word(136)?, word(140)?))
}

type Step<T> = Result<T, (&'static str, io::Error)>;

/// Reads an established connection in repair mode: its state and both queues (send,
/// receive), without consuming anything.
fn read_connection(
    fd: BorrowedFd<'_>,
    state: u32,
) -> Step<(proto::TcpConnection, Vec<u8>, Vec<u8>)> {
    let tcp = libc::IPPROTO_TCP;
    let info = tcp_info(fd).map_err(|e| ("getsockopt(TCP_INFO)", e))?;
    if u32::from(info[0]) != state {
        return Err((
            "getsockopt(TCP_INFO)",
            io::Error::other(format!(
                "the connection went to state {} meanwhile",
                state_name(u32::from(info[0]))
            )),
        ));
    }
    let options = u32::from(info[5]);
    let mut outq = raw::ioctl_int(fd, raw::SIOCOUTQ).map_err(|e| ("ioctl(SIOCOUTQ)", e))?;
    let mut unsent = raw::ioctl_int(fd, raw::SIOCOUTQNSD).map_err(|e| ("ioctl(SIOCOUTQNSD)", e))?;
    if fin_sent(state) {
        // The FIN counts in both and carries no byte.
        outq = (outq - 1).max(0);
        unsent = (unsent - 1).max(0);
    }
    let inq = raw::ioctl_int(fd, raw::SIOCINQ).map_err(|e| ("ioctl(SIOCINQ)", e))?;
    let mss = raw::get_int(fd, tcp, raw::TCP_MAXSEG).map_err(|e| ("getsockopt(TCP_MAXSEG)", e))?;
    let timestamp = if options & TCPI_OPT_TIMESTAMPS != 0 {
        raw::get_int(fd, tcp, raw::TCP_TIMESTAMP).map_err(|e| ("getsockopt(TCP_TIMESTAMP)", e))?
            as u32
    } else {
        0
    };
    let mut win = [0u8; 20];
    let n = raw::get_bytes(fd, tcp, raw::TCP_REPAIR_WINDOW, &mut win)
        .map_err(|e| ("getsockopt(TCP_REPAIR_WINDOW)", e))?;
    if n != 20 {
        return Err((
            "getsockopt(TCP_REPAIR_WINDOW)",
            io::Error::other("short reply"),
        ));
    }
    let w = |i: usize| u32::from_ne_bytes(win[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
    let (recv_seq, recv) = peek_queue(fd, raw::TCP_RECV_QUEUE, inq.max(0) as usize)?;
    let (send_seq, send) = peek_queue(fd, raw::TCP_SEND_QUEUE, outq.max(0) as usize)?;
    raw::set_int(fd, tcp, raw::TCP_REPAIR_QUEUE, 0).map_err(|e| ("TCP_REPAIR_QUEUE", e))?;
    let (snd_wscale, rcv_wscale) = if options & TCPI_OPT_WSCALE != 0 {
        (u32::from(info[6] & 0xf), u32::from(info[6] >> 4))
    } else {
        (0, 0)
    };
    Ok((
        proto::TcpConnection {
            send_seq,
            recv_seq,
            send_queue: None,
            unsent: unsent.max(0) as u32,
            recv_queue: None,
            mss: mss as u32,
            options,
            snd_wscale,
            rcv_wscale,
            timestamp,
            snd_wl1: w(0),
            snd_wnd: w(1),
            max_window: w(2),
            rcv_wnd: w(3),
            rcv_wup: w(4),
        },
        send,
        recv,
    ))
}

/// Selects `queue` in repair mode, reads its sequence number and peeks its `len` bytes.
fn peek_queue(fd: BorrowedFd<'_>, queue: i32, len: usize) -> Step<(u32, Vec<u8>)> {
    let tcp = libc::IPPROTO_TCP;
    raw::set_int(fd, tcp, raw::TCP_REPAIR_QUEUE, queue).map_err(|e| ("TCP_REPAIR_QUEUE", e))?;
    let seq = raw::get_int(fd, tcp, raw::TCP_QUEUE_SEQ).map_err(|e| ("TCP_QUEUE_SEQ", e))? as u32;
    if len == 0 {
        return Ok((seq, Vec::new()));
    }
    // One byte more than expected: the queue must hold exactly `len`.
    let mut buf = vec![0u8; len + 1];
    let (n, _) = rustix::net::recv(fd, &mut buf[..], RecvFlags::PEEK | RecvFlags::DONTWAIT)
        .map_err(|e| ("recv(MSG_PEEK) in repair mode", io::Error::from(e)))?;
    if n != len {
        return Err((
            "recv(MSG_PEEK) in repair mode",
            io::Error::other(format!("peeked {n} bytes of a {len}-byte queue")),
        ));
    }
    buf.truncate(len);
    Ok((seq, buf))
}

/// Sends `data` into the queue selected in repair mode (or, out of repair mode, as the
/// program would).
fn refill(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let mut at = 0;
    while at < data.len() {
        let end = (at + REFILL_CHUNK).min(data.len());
        match rustix::net::send(fd, &data[at..end], SendFlags::NOSIGNAL) {
            Ok(0) => return Err(io::Error::other("the kernel took no bytes")),
            Ok(n) => at += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Builds the connection again on the new socket `fd`, in repair mode, and leaves it
/// in repair mode: [`leave_repair`] finishes it once the restore cannot fail any more,
/// so that a restore that fails closes it without a FIN or a reset.
#[allow(clippy::too_many_arguments)]
fn repair_connection(
    fd: BorrowedFd<'_>,
    family: u32,
    state: u32,
    opts: &proto::InetOptions,
    local: std::net::SocketAddr,
    peer: std::net::SocketAddr,
    c: &proto::TcpConnection,
    send: &[u8],
    recv: &[u8],
) -> Step<()> {
    let tcp = libc::IPPROTO_TCP;
    let set = |name: i32, v: i32, what: &'static str| {
        raw::set_int(fd, tcp, name, v).map_err(|e| (what, e))
    };
    set(raw::TCP_REPAIR, 1, "setsockopt(TCP_REPAIR, 1)")?;
    if family == AF_INET6 {
        sockopt::set_ipv6_v6only(fd, opts.v6only).map_err(|e| ("IPV6_V6ONLY", e.into()))?;
    }
    rustix::net::bind(fd, &local).map_err(|e| ("bind", e.into()))?;
    // A FIN takes a sequence number but no byte: the queues start one lower, and the
    // FINs are put back last (below).
    let recv_seq = c.recv_seq.wrapping_sub(u32::from(fin_received(state)));
    let mut send_seq = c.send_seq.wrapping_sub(u32::from(fin_sent(state)));
    set(
        raw::TCP_REPAIR_QUEUE,
        raw::TCP_RECV_QUEUE,
        "TCP_REPAIR_QUEUE",
    )?;
    set(
        raw::TCP_QUEUE_SEQ,
        recv_seq.wrapping_sub(recv.len() as u32) as i32,
        "TCP_QUEUE_SEQ (receive)",
    )?;
    set(
        raw::TCP_REPAIR_QUEUE,
        raw::TCP_SEND_QUEUE,
        "TCP_REPAIR_QUEUE",
    )?;
    set(
        raw::TCP_QUEUE_SEQ,
        send_seq.wrapping_sub(send.len() as u32) as i32,
        "TCP_QUEUE_SEQ (send)",
    )?;
    rustix::net::connect(fd, &peer).map_err(|e| ("connect in repair mode", e.into()))?;
    // Room for both queues: a refill that does not fit would block (the unsent part is
    // sent normally) or fail. The saved sizes are set again at the end.
    let room = |saved: u32, queued: usize| (saved as usize / 2).max(queued + (64 << 10));
    sockopt::set_socket_send_buffer_size_force(fd, room(opts.sndbuf, send.len()))
        .map_err(|e| ("SO_SNDBUFFORCE", e.into()))?;
    sockopt::set_socket_recv_buffer_size_force(fd, room(opts.rcvbuf, recv.len()))
        .map_err(|e| ("SO_RCVBUFFORCE", e.into()))?;
    let mut opts_raw = Vec::new();
    let mut push = |code: u32, val: u32| {
        opts_raw.extend_from_slice(&code.to_ne_bytes());
        opts_raw.extend_from_slice(&val.to_ne_bytes());
    };
    if c.options & TCPI_OPT_SACK != 0 {
        push(raw::TCPOPT_SACK_PERM, 0);
    }
    if c.options & TCPI_OPT_WSCALE != 0 {
        push(raw::TCPOPT_WINDOW, c.snd_wscale | (c.rcv_wscale << 16));
    }
    if c.options & TCPI_OPT_TIMESTAMPS != 0 {
        push(raw::TCPOPT_TIMESTAMP, 0);
    }
    push(raw::TCPOPT_MAXSEG, c.mss);
    raw::set_bytes(fd, tcp, raw::TCP_REPAIR_OPTIONS, &opts_raw)
        .map_err(|e| ("TCP_REPAIR_OPTIONS", e))?;
    if c.options & TCPI_OPT_TIMESTAMPS != 0 {
        set(raw::TCP_TIMESTAMP, c.timestamp as i32, "TCP_TIMESTAMP")?;
    }
    if !recv.is_empty() {
        set(
            raw::TCP_REPAIR_QUEUE,
            raw::TCP_RECV_QUEUE,
            "TCP_REPAIR_QUEUE",
        )?;
        refill(fd, recv).map_err(|e| ("send (receive queue, repair mode)", e))?;
    }
    let sent = send.len() - c.unsent as usize;
    set(
        raw::TCP_REPAIR_QUEUE,
        raw::TCP_SEND_QUEUE,
        "TCP_REPAIR_QUEUE",
    )?;
    if sent > 0 {
        refill(fd, &send[..sent]).map_err(|e| ("send (send queue, repair mode)", e))?;
    }
    if sent < send.len() {
        // Never sent: sent now, as the program would have.
        set(raw::TCP_REPAIR, 0, "setsockopt(TCP_REPAIR, 0)")?;
        refill(fd, &send[sent..]).map_err(|e| ("send (unsent bytes)", e))?;
        set(raw::TCP_REPAIR, 1, "setsockopt(TCP_REPAIR, 1)")?;
    }
    let (mut rcv_wup, mut rcv_wnd) = (c.rcv_wup, c.rcv_wnd);
    if fin_received(state) {
        // The peer's FIN is not in the receive queue yet: the window is counted from
        // before it.
        rcv_wup = rcv_wup.wrapping_sub(1);
        rcv_wnd = rcv_wnd.wrapping_add(1);
    }
    let mut win = Vec::with_capacity(20);
    for v in [c.snd_wl1, c.snd_wnd, c.max_window, rcv_wnd, rcv_wup] {
        win.extend_from_slice(&v.to_ne_bytes());
    }
    raw::set_bytes(fd, tcp, raw::TCP_REPAIR_WINDOW, &win).map_err(|e| ("TCP_REPAIR_WINDOW", e))?;
    set(raw::TCP_REPAIR_QUEUE, 0, "TCP_REPAIR_QUEUE")?;
    // The FINs, in the order the state diagram met them: ours by shutdown(SHUT_WR) (as
    // already sent, when the peer acknowledged it), the peer's by a forged FIN segment
    // from the peer's address, and the peer's acknowledgement of ours by a forged ACK.
    let una = send_seq.wrapping_sub(send.len() as u32);
    let window = (c.snd_wnd >> c.snd_wscale.min(14)).min(0xffff) as u16;
    let forge = |seq: u32, ack: u32, flags: u8| {
        forge_segment(peer, local, seq, ack, flags, window).map_err(|e| ("forge a segment", e))
    };
    let shut = |acked: bool| -> Step<()> {
        if acked {
            set(
                raw::TCP_REPAIR_QUEUE,
                raw::TCP_SEND_QUEUE,
                "TCP_REPAIR_QUEUE",
            )?;
        }
        rustix::net::shutdown(fd, rustix::net::Shutdown::Write)
            .map_err(|e| ("shutdown(SHUT_WR) in repair mode", e.into()))?;
        set(raw::TCP_REPAIR_QUEUE, 0, "TCP_REPAIR_QUEUE")
    };
    if matches!(state, TCP_FIN_WAIT1 | TCP_FIN_WAIT2 | TCP_CLOSING) {
        shut(state == TCP_FIN_WAIT2)?;
    }
    if fin_received(state) {
        forge(recv_seq, una, TH_FIN | TH_ACK)?;
    }
    if state == TCP_LAST_ACK {
        shut(false)?;
    }
    if state == TCP_FIN_WAIT2 {
        send_seq = send_seq.wrapping_add(1);
        forge(recv_seq, send_seq.wrapping_sub(send.len() as u32), TH_ACK)?;
    }
    Ok(())
}

/// TCP header flags.
const TH_FIN: u8 = 0x01;
const TH_ACK: u8 = 0x10;

/// Sends a bare TCP segment (no options, no data) from `src` to `dst`, marked so that
/// the network lock lets it through.
fn forge_segment(
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
) -> io::Result<()> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&ack.to_be_bytes());
    h.push(5 << 4);
    h.push(flags);
    h.extend_from_slice(&window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    inet::inject(src, dst, libc::IPPROTO_TCP as u8, h, 16, FORGED_MARK)
}

/// Takes a restored connection out of repair mode (the kernel then sends a window
/// probe) and sets its options, which repair mode would hide (`SO_REUSEADDR`).
fn leave_repair(fd: BorrowedFd<'_>, family: u32, opts: &proto::InetOptions) -> Step<()> {
    raw::set_int(fd, libc::IPPROTO_TCP, raw::TCP_REPAIR, 0)
        .map_err(|e| ("setsockopt(TCP_REPAIR, 0)", e))?;
    inet::apply_options(fd, opts, family, true, true)?;
    if opts.sndbuf > 0 {
        sockopt::set_socket_send_buffer_size_force(fd, opts.sndbuf as usize / 2)
            .map_err(|e| ("SO_SNDBUFFORCE", e.into()))?;
    }
    if opts.rcvbuf > 0 {
        sockopt::set_socket_recv_buffer_size_force(fd, opts.rcvbuf as usize / 2)
            .map_err(|e| ("SO_RCVBUFFORCE", e.into()))?;
    }
    Ok(())
}
