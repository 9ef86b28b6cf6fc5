//! Netlink sockets: recreated with their protocol, type, port id (the `nl_pid` they were
//! bound to or given at first use), multicast groups (`NETLINK_LIST_MEMBERSHIPS`),
//! connected destination, buffer sizes and `SOL_NETLINK` options (`NETLINK_PKTINFO`,
//! `NETLINK_BROADCAST_ERROR`, `NETLINK_NO_ENOBUFS`, `NETLINK_LISTEN_ALL_NSID`,
//! `NETLINK_CAP_ACK`, `NETLINK_EXT_ACK`, `NETLINK_GET_STRICT_CHK`).
//!
//! Which protocols: those whose sockets hold nothing in the kernel beyond what is
//! saved, so that a new socket with the same port id, groups and options means the same:
//! route, usersock, sock_diag, xfrm, selinux, fib_lookup, uevent, crypto, and generic
//! netlink; audit sockets unless the audit daemon the kernel knows (`AUDIT_GET`) is a
//! process of the tree (it registered its socket with `AUDIT_SET`, and a new socket would
//! not be registered); connector sockets unless they joined the process-events group
//! (`CN_IDX_PROC`: the proc connector keeps a per-socket listen state and event filter
//! that cannot be read back); netfilter sockets unless an nfnetlink_queue or
//! nfnetlink_log instance is bound to their port id (`/proc/net/netfilter/*`) or an
//! nf_tables table is owned by it (`NFTA_TABLE_OWNER`): those go away with the socket.
//! Other protocols (iscsi, rdma, scsitransport, smc, ...) are refused, naming the
//! protocol.
//!
//! Generic netlink multicast groups are numbered when their family registers (at boot or
//! module load): the dump asks `CTRL_CMD_GETFAMILY` which family and group each number
//! is, and restore asks again by those names, so a socket restored on another boot joins
//! the same groups. What a generic netlink family keeps about a port id (the interfaces
//! an nl80211 socket owns, taskstats listeners) is not seen: the restored socket has the
//! same port id, and a family that keys its state by port id finds it again, but state
//! tied to the closed socket is gone.
//!
//! A restore lacking a capability a socket needs (`CAP_NET_ADMIN` for forced buffer
//! sizes and the groups of protocols that do not let everyone join,
//! `CAP_NET_BROADCAST` for `NETLINK_LISTEN_ALL_NSID`) refuses in [`FileKind::prepare`],
//! before anything is created.
//!
//! Messages queued and not read: the kernel's answers and notifications. Peeking sees
//! only the first (netlink has no `SO_PEEK_OFF`), reading consumes them, and a message
//! written back by pipecr would come from pipecr's port, not the kernel's (0), which
//! programs check. So a socket holding some is refused at dump (naming the bytes of the
//! first message and of the receive buffer), unless
//! [`DumpOptions::drop_netlink_messages`](super::kind::DumpOptions::drop_netlink_messages)
//! asks to save it without them: nothing is read, the live socket keeps them, the
//! restored one starts empty, and the sink records what the image lacks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NlasIterator,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, McastGrpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use pipecr_image::proto::{self, open_file};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt};

use super::kind::{
    Description, Dropped, DumpSink, FileError, FileKind, LiveFile, RestoreCtx, Saved,
};
use crate::sys::inet as raw;

/// Netlink sockets of the protocols the module doc lists.
pub struct NetlinkSocketKind;

const NETLINK_AUDIT: u32 = 9;
const NETLINK_CONNECTOR: u32 = 11;
const NETLINK_NETFILTER: u32 = 12;
const NETLINK_GENERIC: u32 = 16;
/// `CN_IDX_PROC`: the proc connector's multicast group.
const CN_IDX_PROC: u32 = 1;

/// The `SOL_NETLINK` options saved, by number.
const OPTIONS: &[(i32, &str)] = &[
    (3, "NETLINK_PKTINFO"),
    (4, "NETLINK_BROADCAST_ERROR"),
    (5, "NETLINK_NO_ENOBUFS"),
    (8, "NETLINK_LISTEN_ALL_NSID"),
    (10, "NETLINK_CAP_ACK"),
    (11, "NETLINK_EXT_ACK"),
    (12, "NETLINK_GET_STRICT_CHK"),
];

/// The protocol's name, and `Err(why)` when its sockets are refused.
fn protocol(p: u32) -> (&'static str, Result<(), &'static str>) {
    let refused = |name, why| (name, Err(why));
    match p {
        0 => ("route", Ok(())),
        2 => ("usersock", Ok(())),
        4 => ("sock_diag", Ok(())),
        6 => ("xfrm", Ok(())),
        7 => ("selinux", Ok(())),
        10 => ("fib_lookup", Ok(())),
        11 => ("connector", Ok(())),
        12 => ("netfilter", Ok(())),
        15 => ("uevent", Ok(())),
        16 => ("generic", Ok(())),
        21 => ("crypto", Ok(())),
        9 => ("audit", Ok(())),
        8 => refused("iscsi", "iSCSI transports keep sessions by socket"),
        18 => refused("scsitransport", "SCSI transports keep state by socket"),
        20 => refused("rdma", "RDMA port mapper registrations are kept by socket"),
        22 => refused("smc", "SMC keeps state by socket"),
        _ => refused("other", "pipecr does not know what the kernel keeps for it"),
    }
}

/// Capabilities, by number.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_BROADCAST: u32 = 11;

/// Protocols whose multicast groups a process without `CAP_NET_ADMIN` may join
/// (`NL_CFG_F_NONROOT_RECV`): route, usersock, selinux, audit, netfilter, uevent, generic
/// (some generic and netfilter groups ask for more, which only creating tells).
const NONROOT_RECV: &[u32] = &[0, 2, 7, 9, 12, 15, 16];

/// What restoring `s` needs beyond opening a socket, given the buffer sizes a new socket
/// gets (`net.core.rmem_default`, `wmem_default`): (capability, why), for a check made
/// before anything is created.
fn capabilities_needed(s: &proto::NetlinkSocket, defaults: (u32, u32)) -> Vec<(u32, &'static str)> {
    let mut needs = Vec::new();
    if (s.rcvbuf != 0 && s.rcvbuf != defaults.0) || (s.sndbuf != 0 && s.sndbuf != defaults.1) {
        needs.push((
            CAP_NET_ADMIN,
            "its buffer sizes (SO_RCVBUFFORCE, SO_SNDBUFFORCE)",
        ));
    }
    if s.groups.iter().any(|w| *w != 0) && !NONROOT_RECV.contains(&s.protocol) {
        needs.push((CAP_NET_ADMIN, "its multicast groups"));
    }
    if s.options & (1 << 8) != 0 {
        needs.push((CAP_NET_BROADCAST, "NETLINK_LISTEN_ALL_NSID"));
    }
    needs
}

/// The words of `NETLINK_LIST_MEMBERSHIPS` as group numbers.
fn group_numbers(words: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, word) in words.iter().enumerate() {
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                out.push(w as u32 * 32 + bit + 1);
            }
        }
    }
    out
}

/// (`nl_pid`, `nl_groups`) of a raw `sockaddr_nl`.
fn parse_nl(b: &[u8]) -> (u32, u32) {
    let word = |at: usize| {
        b.get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .map_or(0, u32::from_ne_bytes)
    };
    (word(4), word(8))
}

/// A raw `sockaddr_nl` for (`pid`, `groups`).
fn sockaddr_nl(pid: u32, groups: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(12);
    b.extend_from_slice(&(libc::AF_NETLINK as u16).to_ne_bytes());
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&pid.to_ne_bytes());
    b.extend_from_slice(&groups.to_ne_bytes());
    b
}

fn groups_of(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut buf = [0u8; 128];
    let n = raw::get_bytes(
        fd,
        raw::SOL_NETLINK,
        raw::NETLINK_LIST_MEMBERSHIPS,
        &mut buf,
    )?;
    let mut words: Vec<u32> = buf[..n]
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

/// `NLMSG_ERROR` and `NLMSG_DONE`.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Sends `request` (one whole netlink message) on a new socket of `protocol` made in the
/// network namespace of `netns` (a `/proc/PID/ns/net` path; `None`: the caller's), and
/// returns the payload of every message of the answer, by type, until `NLMSG_DONE` (a
/// dump) or the first message (a single answer). An `NLMSG_ERROR` with a code fails
/// with that error.
fn exchange(protocol: u32, netns: Option<&str>, request: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    let nl = socket_in(protocol, netns)?;
    rustix::net::connect(&nl, &rustix::net::netlink::SocketAddrNetlink::new(0, 0))?;
    rustix::net::send(&nl, request, SendFlags::empty())?;
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink answer");
    let mut out = Vec::new();
    let mut rx = vec![0u8; 64 << 10];
    loop {
        let n = rustix::net::recv(&nl, &mut rx[..], RecvFlags::empty())?.0;
        let mut at = 0;
        let mut multi = false;
        while at < n {
            let msg = NetlinkBuffer::new_checked(&rx[at..n]).map_err(|_| bad())?;
            let len = msg.length() as usize;
            multi |= msg.flags() & netlink_packet_core::NLM_F_MULTIPART != 0;
            match msg.message_type() {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let code = msg
                        .payload()
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .map(i32::from_ne_bytes)
                        .ok_or_else(bad)?;
                    if code != 0 {
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    return Ok(out);
                }
                ty => out.push((ty, msg.payload().to_vec())),
            }
            if len == 0 {
                return Err(bad());
            }
            at += (len + 3) & !3;
        }
        if !multi {
            return Ok(out);
        }
    }
}

/// A new netlink socket of `protocol` in the network namespace `netns` (made on a
/// thread of its own that enters it: a socket stays in the namespace it was made in).
fn socket_in(protocol: u32, netns: Option<&str>) -> io::Result<OwnedFd> {
    let make = move || -> io::Result<OwnedFd> {
        Ok(rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            std::num::NonZeroU32::new(protocol).map(rustix::net::Protocol::from_raw),
        )?)
    };
    let Some(netns) = netns else {
        return make();
    };
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            make()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("netlink socket thread failed")))
    })
}

/// A `CTRL_CMD_GETFAMILY` request (with `nlas`: of one family; without: a dump).
fn getfamily(nlas: Vec<GenlCtrlAttrs>) -> Vec<u8> {
    let dump = nlas.is_empty();
    let mut genl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas,
    });
    genl.finalize();
    let mut msg = NetlinkMessage::from(genl);
    msg.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { 0 };
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// A generic netlink family as `CTRL_CMD_GETFAMILY` describes it: its name and its
/// multicast groups (number, name).
type Family = (String, Vec<(u32, String)>);

/// The families of a `CTRL_CMD_GETFAMILY` answer.
fn families(answer: Vec<(u16, Vec<u8>)>) -> io::Result<Vec<Family>> {
    let mut out = Vec::new();
    for (ty, payload) in answer {
        let mut header = NetlinkHeader::default();
        header.message_type = ty;
        header.length = (16 + payload.len()) as u32;
        let mut bytes = vec![0u8; 16];
        bytes[..4].copy_from_slice(&header.length.to_ne_bytes());
        bytes[4..6].copy_from_slice(&ty.to_ne_bytes());
        bytes.extend_from_slice(&payload);
        let msg = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let NetlinkPayload::InnerMessage(genl) = msg.payload else {
            continue;
        };
        let mut name = String::new();
        let mut groups = Vec::new();
        for nla in genl.payload.nlas {
            match nla {
                GenlCtrlAttrs::FamilyName(n) => name = n,
                GenlCtrlAttrs::McastGroups(list) => {
                    for g in list {
                        let id = g.iter().find_map(|a| match a {
                            McastGrpAttrs::Id(i) => Some(*i),
                            _ => None,
                        });
                        let n = g.iter().find_map(|a| match a {
                            McastGrpAttrs::Name(n) => Some(n.clone()),
                            _ => None,
                        });
                        if let (Some(id), Some(n)) = (id, n) {
                            groups.push((id, n));
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((name, groups));
    }
    Ok(out)
}

/// The family and name of each generic netlink multicast group of `ids`, as
/// `CTRL_CMD_GETFAMILY` names them now; an id no family owns is left out.
fn genl_names(ids: &[u32]) -> io::Result<Vec<proto::GenlGroup>> {
    let all = families(exchange(NETLINK_GENERIC, None, &getfamily(Vec::new()))?)?;
    let mut out = Vec::new();
    for &id in ids {
        let found = all
            .iter()
            .find_map(|(f, gs)| gs.iter().find(|(i, _)| *i == id).map(|(_, n)| (f, n)));
        if let Some((family, name)) = found {
            out.push(proto::GenlGroup {
                id,
                family: family.clone(),
                name: name.clone(),
            });
        }
    }
    Ok(out)
}

/// The number the multicast group `name` of generic netlink family `family` has now,
/// `None` when the family or the group is not registered.
fn genl_group_id(family: &str, name: &str) -> io::Result<Option<u32>> {
    let request = getfamily(vec![GenlCtrlAttrs::FamilyName(family.to_owned())]);
    let answer = match exchange(NETLINK_GENERIC, None, &request) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        other => other?,
    };
    Ok(families(answer)?
        .into_iter()
        .flat_map(|(_, gs)| gs)
        .find(|(_, n)| n == name)
        .map(|(id, _)| id))
}

/// The PID of the audit daemon the kernel sends the audit log to (`AUDIT_GET`:
/// `audit_status.pid`), 0 when none is registered.
fn audit_daemon() -> io::Result<i32> {
    const AUDIT_GET: u16 = 1000;
    let mut request = vec![0u8; 16];
    request[..4].copy_from_slice(&16u32.to_ne_bytes());
    request[4..6].copy_from_slice(&AUDIT_GET.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    let answer = exchange(NETLINK_AUDIT, None, &request)?;
    // struct audit_status: mask, enabled, failure, pid, ...
    answer
        .iter()
        .find(|(ty, _)| *ty == AUDIT_GET)
        .and_then(|(_, p)| p.get(12..16))
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no audit_status in the answer"))
}

/// Why a netfilter socket with port id `port`, held by `pid`, holds kernel state a new
/// socket would not: an nfnetlink_queue or nfnetlink_log instance bound to it, or an
/// nf_tables table it owns; `None` when it holds none.
fn netfilter_state(pid: i32, port: u32) -> io::Result<Option<String>> {
    for (file, what) in [
        ("nfnetlink_queue", "nfnetlink_queue queue"),
        ("nfnetlink_log", "nfnetlink_log group"),
    ] {
        // Each line: instance number, then the port id it is bound to.
        let text = match std::fs::read_to_string(format!("/proc/{pid}/net/netfilter/{file}")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in text.lines() {
            let mut f = line.split_ascii_whitespace();
            if let (Some(n), Some(p)) = (f.next(), f.next()) {
                if p.parse::<u32>().ok() == Some(port) {
                    return Ok(Some(format!("{what} {n} is bound to its port id {port}")));
                }
            }
        }
    }
    // NFT_MSG_GETTABLE dump: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, with an
    // nfgenmsg (family AF_UNSPEC, version 0, res_id 0).
    let mut header = NetlinkHeader::default();
    header.message_type = (10 << 8) | 1;
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.length = 20;
    let mut request = vec![0u8; 20];
    request[..4].copy_from_slice(&header.length.to_ne_bytes());
    request[4..6].copy_from_slice(&header.message_type.to_ne_bytes());
    request[6..8].copy_from_slice(&header.flags.to_ne_bytes());
    let netns = format!("/proc/{pid}/ns/net");
    let tables = match exchange(NETLINK_NETFILTER, Some(&netns), &request) {
        Ok(t) => t,
        // No nf_tables in this kernel: no table can be owned.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::EINVAL | libc::EOPNOTSUPP | libc::EPROTONOSUPPORT)
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    for (_, payload) in tables {
        let (mut name, mut owner) = (String::new(), None);
        for nla in NlasIterator::new(payload.get(4..).unwrap_or_default()).flatten() {
            match nla.kind() & 0x3fff {
                // NFTA_TABLE_NAME
                1 => {
                    name = String::from_utf8_lossy(nla.value())
                        .trim_end_matches('\0')
                        .to_owned();
                }
                // NFTA_TABLE_OWNER, big-endian
                7 => {
                    owner = nla
                        .value()
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                }
                _ => {}
            }
        }
        if owner == Some(port) {
            return Ok(Some(format!(
                "nf_tables table {name} is owned by its port id {port}"
            )));
        }
    }
    Ok(None)
}

impl FileKind for NetlinkSocketKind {
    fn name(&self) -> &'static str {
        "netlink socket"
    }

    fn claims(&self, file: &LiveFile) -> bool {
        let fd = file.file.as_fd();
        file.link.starts_with("socket:[")
            && sockopt::socket_domain(fd).is_ok_and(|d| d == AddressFamily::NETLINK)
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
        let number = raw::get_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .map_err(|e| fail("SO_PROTOCOL", e))? as u32;
        let (name, supported) = protocol(number);
        if let Err(why) = supported {
            return Err(unsupported(format!(
                "netlink socket of protocol {number} ({name}; {why})"
            )));
        }
        let ty = sockopt::socket_type(fd).map_err(|e| fail("SO_TYPE", e.into()))?;
        let (port_id, _) = parse_nl(&raw::raw_name(fd, false).map_err(|e| fail("getsockname", e))?);
        let (dst_port_id, dst_group) = match raw::raw_name(fd, true) {
            Ok(b) => parse_nl(&b),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => (0, 0),
            Err(e) => return Err(fail("getpeername", e)),
        };
        let groups = groups_of(fd).map_err(|e| fail("NETLINK_LIST_MEMBERSHIPS", e))?;
        let numbers = group_numbers(&groups);
        if number == NETLINK_CONNECTOR && numbers.contains(&CN_IDX_PROC) {
            return Err(unsupported(
                "connector netlink socket in the process-events group (CN_IDX_PROC: the \
                 proc connector keeps its listen state and event filter in the kernel, \
                 where pipecr cannot read them)"
                    .into(),
            ));
        }
        if number == NETLINK_NETFILTER && port_id != 0 {
            if let Some(why) = netfilter_state(file.pid, port_id)
                .map_err(|e| fail("read the netfilter state of its port id", e))?
            {
                return Err(unsupported(format!(
                    "netfilter netlink socket whose {why} (it goes away with the socket)"
                )));
            }
        }
        if number == NETLINK_AUDIT {
            match audit_daemon() {
                Ok(daemon) if daemon == file.pid || sink.task(daemon).is_some() => {
                    return Err(unsupported(format!(
                        "audit netlink socket of a tree holding the audit daemon (pid \
                         {daemon} registered its socket with AUDIT_SET; a new socket would \
                         not be registered)"
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(unsupported(format!(
                        "audit netlink socket (pipecr cannot tell whether it is the audit \
                         daemon's: AUDIT_GET failed: {e})"
                    )));
                }
            }
        }
        let genl_groups = if number == NETLINK_GENERIC && !numbers.is_empty() {
            genl_names(&numbers).map_err(|e| fail("CTRL_CMD_GETFAMILY", e))?
        } else {
            Vec::new()
        };
        let mut options = 0u32;
        for &(opt, what) in OPTIONS {
            match raw::get_int(fd, raw::SOL_NETLINK, opt) {
                Ok(0) => {}
                Ok(_) => options |= 1 << opt,
                // An option this kernel lacks is off.
                Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {}
                Err(e) => return Err(fail(what, e)),
            }
        }
        let mut probe = [0u8; 1];
        match rustix::net::recv(
            fd,
            &mut probe[..],
            RecvFlags::PEEK | RecvFlags::DONTWAIT | RecvFlags::TRUNC,
        ) {
            Err(rustix::io::Errno::AGAIN) => {}
            Ok((_, first)) => {
                // SO_MEMINFO word 0 (SK_MEMINFO_RMEM_ALLOC): the receive buffer in use,
                // headers and all (netlink has no FIONREAD).
                let mut meminfo = [0u8; 36];
                let buffered = raw::get_bytes(fd, libc::SOL_SOCKET, libc::SO_MEMINFO, &mut meminfo)
                    .map_err(|e| fail("SO_MEMINFO", e))?;
                let buffered = meminfo[..buffered.min(4)]
                    .try_into()
                    .map_or(0, u32::from_ne_bytes);
                let what = format!(
                    "{name} netlink socket with messages waiting to be read (the first is \
                     {first} bytes; {buffered} bytes of receive buffer in use)"
                );
                if !sink.options.drop_netlink_messages {
                    return Err(unsupported(format!(
                        "{what}: pipecr cannot save them without consuming them, nor queue \
                         them again as the kernel's; --drop-netlink-messages saves the \
                         socket without them"
                    )));
                }
                // Nothing is read: the live socket keeps its messages for a tree that
                // runs on; only the restored one lacks them.
                sink.drop_state(Dropped {
                    pid: file.pid,
                    fd: file.fd,
                    what: format!("queued messages of a {name} netlink socket ({buffered} bytes of receive buffer)"),
                });
            }
            Err(e) => return Err(fail("recv(MSG_PEEK)", e.into())),
        }
        Ok(open_file::Kind::NetlinkSocket(proto::NetlinkSocket {
            inode: file.stat.st_ino,
            r#type: ty.as_raw(),
            protocol: number,
            port_id,
            groups,
            dst_port_id,
            dst_group,
            rcvbuf: sockopt::socket_recv_buffer_size(fd).map_err(|e| fail("SO_RCVBUF", e.into()))?
                as u32,
            sndbuf: sockopt::socket_send_buffer_size(fd).map_err(|e| fail("SO_SNDBUF", e.into()))?
                as u32,
            options,
            genl_groups,
        }))
    }

    fn restores(&self, kind: &open_file::Kind) -> bool {
        matches!(kind, open_file::Kind::NetlinkSocket(_))
    }

    fn prepare(&self, ctx: &mut RestoreCtx<'_>) -> Result<(), FileError> {
        let sysctl = |name: &str| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let defaults = (sysctl("rmem_default"), sysctl("wmem_default"));
        for file in ctx.open_files()? {
            let Some(open_file::Kind::NetlinkSocket(s)) = &file.kind else {
                continue;
            };
            let missing = capabilities_needed(s, defaults)
                .into_iter()
                .find(|(cap, _)| !crate::proc::has_effective_cap(*cap));
            if let Some((cap, why)) = missing {
                let name = if cap == CAP_NET_ADMIN {
                    "CAP_NET_ADMIN"
                } else {
                    "CAP_NET_BROADCAST"
                };
                return Err(FileError::Restore {
                    id: file.id,
                    what: format!("{} netlink socket", protocol(s.protocol).0),
                    op: if cap == CAP_NET_ADMIN {
                        "restore (needs CAP_NET_ADMIN, which this restore lacks)"
                    } else {
                        "restore (needs CAP_NET_BROADCAST, which this restore lacks)"
                    },
                    source: io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{why} need {name}"),
                    ),
                });
            }
        }
        Ok(())
    }

    fn restore(
        &self,
        file: &proto::OpenFile,
        _ctx: &mut RestoreCtx<'_>,
    ) -> Result<OwnedFd, FileError> {
        let Some(open_file::Kind::NetlinkSocket(s)) = &file.kind else {
            return Err(FileError::Invalid {
                id: file.id,
                reason: "not a netlink socket".into(),
            });
        };
        let (name, supported) = protocol(s.protocol);
        let fail = |op: &'static str, source: io::Error| FileError::Restore {
            id: file.id,
            what: format!("{name} netlink socket"),
            op,
            source,
        };
        if supported.is_err() {
            return Err(FileError::Invalid {
                id: file.id,
                reason: format!("a netlink socket of protocol {} ({name})", s.protocol),
            });
        }
        // Generic netlink groups by name: the numbers they have on this boot.
        let mut groups = group_numbers(&s.groups);
        for g in &s.genl_groups {
            let now = genl_group_id(&g.family, &g.name)
                .map_err(|e| fail("CTRL_CMD_GETFAMILY", e))?
                .ok_or_else(|| FileError::Restore {
                    id: file.id,
                    what: format!(
                        "generic netlink socket in group {} of family {}",
                        g.name, g.family
                    ),
                    op: "find the group (CTRL_CMD_GETFAMILY)",
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                })?;
            if let Some(slot) = groups.iter_mut().find(|n| **n == g.id) {
                *slot = now;
            }
        }
        let ty = SocketType::from_raw(s.r#type);
        let sock = rustix::net::socket_with(
            AddressFamily::NETLINK,
            ty,
            SocketFlags::CLOEXEC,
            std::num::NonZeroU32::new(s.protocol).map(rustix::net::Protocol::from_raw),
        )
        .map_err(|e| fail("socket", e.into()))?;
        let fd = sock.as_fd();
        let fresh = (
            sockopt::socket_recv_buffer_size(fd).map_err(|e| fail("SO_RCVBUF", e.into()))?,
            sockopt::socket_send_buffer_size(fd).map_err(|e| fail("SO_SNDBUF", e.into()))?,
        );
        if s.rcvbuf as usize != fresh.0 && s.rcvbuf > 0 {
            sockopt::set_socket_recv_buffer_size_force(fd, s.rcvbuf as usize / 2)
                .map_err(|e| fail("SO_RCVBUFFORCE", e.into()))?;
        }
        if s.sndbuf as usize != fresh.1 && s.sndbuf > 0 {
            sockopt::set_socket_send_buffer_size_force(fd, s.sndbuf as usize / 2)
                .map_err(|e| fail("SO_SNDBUFFORCE", e.into()))?;
        }
        for &(opt, what) in OPTIONS {
            if s.options & (1 << opt) != 0 {
                raw::set_int(fd, raw::SOL_NETLINK, opt, 1).map_err(|e| fail(what, e))?;
            }
        }
        if s.port_id != 0 {
            raw::raw_bind_or_connect(fd, &sockaddr_nl(s.port_id, 0), false)
                .map_err(|e| fail("bind (port id)", e))?;
        }
        for group in groups {
            raw::set_int(
                fd,
                raw::SOL_NETLINK,
                raw::NETLINK_ADD_MEMBERSHIP,
                group as i32,
            )
            .map_err(|e| fail("NETLINK_ADD_MEMBERSHIP", e))?;
        }
        if s.dst_port_id != 0 || s.dst_group != 0 {
            raw::raw_bind_or_connect(fd, &sockaddr_nl(s.dst_port_id, s.dst_group), true)
                .map_err(|e| fail("connect", e))?;
        }
        let flags = rustix::fs::OFlags::from_bits_retain(file.flags) & rustix::fs::OFlags::NONBLOCK;
        rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| fail("fcntl(F_SETFL)", e.into()))?;
        Ok(sock)
    }

    fn describe(&self, file: &proto::OpenFile, _saved: &Saved<'_>) -> Description {
        let Some(open_file::Kind::NetlinkSocket(s)) = &file.kind else {
            return Description {
                text: "not a netlink socket".into(),
                pipe: None,
            };
        };
        let mut text = format!(
            "{} netlink socket, port id {}, groups {:#x}",
            protocol(s.protocol).0,
            s.port_id,
            s.groups.first().copied().unwrap_or(0)
        );
        for g in &s.genl_groups {
            text.push_str(&format!(", group {} = {}/{}", g.id, g.family, g.name));
        }
        let on: Vec<&str> = OPTIONS
            .iter()
            .filter(|(o, _)| s.options & (1 << o) != 0)
            .map(|(_, n)| *n)
            .collect();
        if !on.is_empty() {
            text.push_str(&format!(", {}", on.join("|")));
        }
        Description { text, pipe: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_asked_for_what_needs_them() {
        let defaults = (212_992, 212_992);
        let socket = |protocol, groups: Vec<u32>, options, rcvbuf| proto::NetlinkSocket {
            protocol,
            groups,
            options,
            rcvbuf,
            sndbuf: 212_992,
            ..Default::default()
        };
        // A route socket in groups, with default buffers: nothing more.
        assert_eq!(
            capabilities_needed(&socket(0, vec![0x11], 0, 212_992), defaults),
            vec![]
        );
        // A connector socket in a group, a bigger buffer, NETLINK_LISTEN_ALL_NSID.
        assert_eq!(
            capabilities_needed(&socket(11, vec![0, 1], 1 << 8, 1 << 20), defaults),
            vec![
                (
                    CAP_NET_ADMIN,
                    "its buffer sizes (SO_RCVBUFFORCE, SO_SNDBUFFORCE)"
                ),
                (CAP_NET_ADMIN, "its multicast groups"),
                (CAP_NET_BROADCAST, "NETLINK_LISTEN_ALL_NSID"),
            ]
        );
        // No group at all (the words are zero).
        assert_eq!(
            capabilities_needed(&socket(6, vec![0], 0, 0), defaults),
            vec![]
        );
    }

    #[test]
    fn sockaddr_nl_round_trip() {
        assert_eq!(parse_nl(&sockaddr_nl(1234, 0x11)), (1234, 0x11));
        assert_eq!(parse_nl(&[]), (0, 0));
    }
}
