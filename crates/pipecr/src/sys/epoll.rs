//! `epoll_ctl` and `epoll_wait` on descriptor numbers rather than owned descriptors: an
//! epoll registration is keyed by (open file, descriptor number), so restoring one means
//! adding an open file under a number chosen by the image, which the calling process may
//! be using for something else at that moment.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// `EPOLLONESHOT`, `EPOLLET`, `EPOLLEXCLUSIVE` and `EPOLLWAKEUP`: the bits of an event mask
/// that are no poll events (the kernel's `EP_PRIVATE_BITS`).
pub const PRIVATE_BITS: u32 =
    (libc::EPOLLONESHOT | libc::EPOLLET | libc::EPOLLEXCLUSIVE | libc::EPOLLWAKEUP) as u32;

/// Every poll event an epoll registration can wait for.
pub const ALL_EVENTS: u32 = (libc::EPOLLIN
    | libc::EPOLLPRI
    | libc::EPOLLOUT
    | libc::EPOLLERR
    | libc::EPOLLHUP
    | libc::EPOLLRDNORM
    | libc::EPOLLRDBAND
    | libc::EPOLLWRNORM
    | libc::EPOLLWRBAND
    | libc::EPOLLMSG
    | libc::EPOLLRDHUP) as u32;

/// `epoll_ctl(epfd, op, tfd, &{events, data})` on a number `tfd` the caller holds open.
fn ctl(epfd: RawFd, op: libc::c_int, tfd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut event = libc::epoll_event { events, u64: data };
    // SAFETY: epoll_ctl reads one epoll_event from `event`, a live local of that type;
    // the descriptors are integers the kernel checks.
    let ret = unsafe { libc::epoll_ctl(epfd, op, tfd, &mut event) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether descriptor number `fd` is open in the calling process, and with which
/// descriptor flags (`FD_CLOEXEC`).
fn fd_flags(fd: RawFd) -> Option<libc::c_int> {
    // SAFETY: fcntl(F_GETFD) takes integers and touches no memory.
    let ret = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (ret >= 0).then_some(ret)
}

/// `dup3(from, to, flags)` on numbers of the calling process.
fn dup3(from: RawFd, to: RawFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: dup3 takes integers and touches no memory.
    let ret = unsafe { libc::dup3(from, to, flags) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `close(fd)` on a number of the calling process this module put there itself.
fn close(fd: RawFd) {
    // SAFETY: close takes an integer; `fd` is a number this module opened and nothing
    // else in the process refers to.
    unsafe { libc::close(fd) };
}

/// `epoll_ctl(epoll, EPOLL_CTL_ADD, tfd, &{events, data})` for `target` under the number
/// `tfd`, whatever the calling process holds at `tfd`: `target` is placed there for the
/// call and the number is given back as it was (its occupant, with its close-on-exec
/// bit, or nothing). Closing the temporary number leaves the registration in place: the
/// kernel drops it only when the open file itself goes.
///
/// Not for a process with other threads that may use `tfd` meanwhile.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
#[doc(alias = "epoll_ctl")]
pub fn add_as(
    epoll: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    tfd: RawFd,
    events: u32,
    data: u64,
) -> io::Result<()> {
    ctl_as(epoll, libc::EPOLL_CTL_ADD, target, tfd, events, data)
}

/// `epoll_ctl(epoll, op, tfd, ...)` with `target` placed at `tfd` for the call.
fn ctl_as(
    epoll: BorrowedFd<'_>,
    op: libc::c_int,
    target: BorrowedFd<'_>,
    tfd: RawFd,
    events: u32,
    data: u64,
) -> io::Result<()> {
    if tfd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if target.as_raw_fd() == tfd {
        return ctl(epoll.as_raw_fd(), op, tfd, events, data);
    }
    // The occupant of `tfd`, set aside (close-on-exec) for the call.
    let aside = match fd_flags(tfd) {
        Some(flags) => {
            // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and touches no memory.
            let copy = unsafe { libc::fcntl(tfd, libc::F_DUPFD_CLOEXEC, 0) };
            if copy < 0 {
                return Err(io::Error::last_os_error());
            }
            Some((copy, flags))
        }
        None => None,
    };
    // If the epoll itself sat at `tfd`, its copy set aside stands in for it.
    let epfd = match aside {
        Some((copy, _)) if epoll.as_raw_fd() == tfd => copy,
        _ => epoll.as_raw_fd(),
    };
    let added = dup3(target.as_raw_fd(), tfd, libc::O_CLOEXEC)
        .and_then(|()| ctl(epfd, op, tfd, events, data));
    let put_back = match aside {
        Some((copy, flags)) => {
            let cloexec = if flags & libc::FD_CLOEXEC != 0 {
                libc::O_CLOEXEC
            } else {
                0
            };
            let back = dup3(copy, tfd, cloexec);
            close(copy);
            back
        }
        None => {
            if fd_flags(tfd).is_some() {
                close(tfd);
            }
            Ok(())
        }
    };
    added.and(put_back)
}

/// `epoll_ctl(epoll, EPOLL_CTL_MOD, tfd, &{events, data})` for the registration of
/// `target` under the number `tfd`, placed there for the call as [`add_as`] does.
#[doc(alias = "epoll_ctl")]
pub fn modify_as(
    epoll: BorrowedFd<'_>,
    target: BorrowedFd<'_>,
    tfd: RawFd,
    events: u32,
    data: u64,
) -> io::Result<()> {
    ctl_as(epoll, libc::EPOLL_CTL_MOD, target, tfd, events, data)
}

/// `epoll_wait(epoll, events, 1, 0)`—Takes at most one ready event without waiting: the
/// (events, data) reported, or `None` when nothing is ready.
///
/// # References
///  - [Linux](https://man7.org/linux/man-pages/man2/epoll_wait.2.html)
#[doc(alias = "epoll_wait")]
pub fn take_one(epoll: BorrowedFd<'_>) -> io::Result<Option<(u32, u64)>> {
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: epoll_wait writes at most one epoll_event (maxevents 1) into `event`, a
    // live local of that type.
    let ret = unsafe { libc::epoll_wait(epoll.as_raw_fd(), &mut event, 1, 0) };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some((event.events, event.u64))),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsFd, AsRawFd};

    use super::*;

    /// What `/proc/self/fdinfo/EP` lists: (tfd, data) per registration.
    fn registered(ep: BorrowedFd<'_>) -> Vec<(i32, u64)> {
        let text =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", ep.as_raw_fd())).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("tfd:"))
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (
                    w[0].parse().unwrap(),
                    u64::from_str_radix(w[4], 16).unwrap(),
                )
            })
            .collect()
    }

    /// A number the calling process uses for something else: the target is registered
    /// under it, and the occupant is back at it afterwards, with its close-on-exec bit.
    #[test]
    fn adds_under_a_busy_number_and_gives_it_back() {
        let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let occupant = rustix::event::eventfd(7, rustix::event::EventfdFlags::empty()).unwrap();
        // Not close-on-exec: the bit must survive the detour.
        rustix::io::fcntl_setfd(&occupant, rustix::io::FdFlags::empty()).unwrap();
        let busy = occupant.as_raw_fd();
        let before = std::fs::read_link(format!("/proc/self/fd/{busy}")).unwrap();

        add_as(ep.as_fd(), r.as_fd(), busy, libc::EPOLLIN as u32, 42).unwrap();
        assert_eq!(registered(ep.as_fd()), [(busy, 42)]);
        let after = std::fs::read_link(format!("/proc/self/fd/{busy}")).unwrap();
        assert_eq!(before, after, "the occupant is back");
        assert_eq!(
            rustix::io::fcntl_getfd(&occupant).unwrap(),
            rustix::io::FdFlags::empty()
        );
        let mut count = [0u8; 8];
        rustix::io::read(&occupant, &mut count).unwrap();
        assert_eq!(u64::from_ne_bytes(count), 7, "the same eventfd");

        // The epoll instance itself at the number: its copy set aside stands in.
        let at_ep = ep.as_raw_fd();
        let (r2, _w2) = rustix::pipe::pipe().unwrap();
        add_as(ep.as_fd(), r2.as_fd(), at_ep, libc::EPOLLIN as u32, 43).unwrap();
        let mut got = registered(ep.as_fd());
        got.sort_unstable();
        let mut want = vec![(busy, 42), (at_ep, 43)];
        want.sort_unstable();
        assert_eq!(got, want);
    }

    /// A free number is closed again after the call; the registration stays.
    #[test]
    fn adds_under_a_free_number_and_closes_it() {
        let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
        let (r, w) = rustix::pipe::pipe().unwrap();
        // High, away from what other tests of this binary open.
        let free = 900;
        assert!(fd_flags(free).is_none());
        add_as(ep.as_fd(), r.as_fd(), free, libc::EPOLLIN as u32, 44).unwrap();
        assert!(fd_flags(free).is_none(), "the number is free again");
        assert_eq!(registered(ep.as_fd()), [(free, 44)]);
        rustix::io::write(&w, b"x").unwrap();
        assert_eq!(
            take_one(ep.as_fd()).unwrap(),
            Some((libc::EPOLLIN as u32, 44))
        );
    }
}
