/*
 * pipecr.h - C interface of libpipecr: checkpoint and restore a Linux pipe from user space.
 *
 * The interface of the 2007 kernel RFC "pipe: checkpoint and restart for pipe"
 * (ckpoint_pipe(file, img), restore_pipe(fd[2], img)), done with the kernel's existing
 * system calls. A checkpoint reads the pipe's pending bytes with tee(2), so the pipe keeps
 * them; it records the capacity (F_GETPIPE_SZ), packet boundaries of a packet-mode pipe
 * (O_DIRECT, see pipe(2)) and the status flags of the end it was given. The image is a
 * directory in pipecr's image format v1 (docs/IMAGE-FORMAT.md), readable by later versions
 * and by the `pipecr show` command.
 *
 * Conventions, for every function below:
 *  - 0 is success; -1 is failure, with errno set (the operating-system error when there is
 *    one, else EINVAL, EEXIST or ENOENT) and a message available from pipecr_last_error().
 *  - Paths are any NUL-terminated byte strings, as Linux paths are (UTF-8 is not required).
 *  - Null pointers and invalid descriptor numbers are reported as errors, never crashes.
 *  - Functions are thread-safe; the last-error message is per thread.
 *
 * Link with -lpipecr (libpipecr.so, or libpipecr.a plus the system libraries that
 * `rustc --print native-static-libs` lists: typically -lgcc_s -lutil -lrt -lpthread -lm
 * -ldl -lc).
 *
 * C99. Linux only.
 */
#ifndef PIPECR_H
#define PIPECR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * pipecr_checkpoint_pipe - save the pipe behind fd into a new image directory.
 *
 * fd:         a read end, a write end, or a FIFO, open in the calling process. From a
 *             write end alone, pipecr reads the pipe through /proc/self/fd/FD. The
 *             descriptor must stay open during the call.
 * image_path: the image directory to create. It must not exist (EEXIST otherwise); it
 *             appears only once complete, written atomically (a temporary sibling
 *             directory, fsync, rename).
 *
 * The pipe's data is not consumed: after the call the pipe holds exactly the bytes it
 * held before. The pipe must not be written or read by others during the call.
 *
 * Errors: EBADF if fd is not open; EINVAL if fd is not a pipe or FIFO (the message names
 * fd and what it is instead) or image_path is null; EEXIST if image_path exists; any error
 * of the underlying system calls (tee, pipe2, fcntl, mkdir, write, fsync, rename, ...).
 *
 * Returns 0 on success, -1 on failure.
 */
int pipecr_checkpoint_pipe(int fd, const char *image_path);

/*
 * pipecr_restore_pipe - recreate a saved pipe and install its two ends.
 *
 * image_path: an image directory written by pipecr_checkpoint_pipe (or the Rust
 *             pipecr::pipe::save). Its checksums are verified before anything is created.
 * fd:         where to put the ends: fd[0] receives the read end, fd[1] the write end.
 *             A non-negative number is used as is; whatever it referred to is closed,
 *             as by dup2(2). A negative number lets pipecr choose one, and the number
 *             chosen is written back into fd[]. Two non-negative numbers must differ.
 *
 * The new pipe has the saved capacity and pending bytes (one write per packet for a
 * packet-mode pipe, so every packet boundary is kept). Each end gets the saved status
 * flags (O_NONBLOCK, O_DIRECT, ...) of the end that was checkpointed, the other one plain
 * flags (a write end of a packet-mode pipe keeps O_DIRECT). Neither descriptor is
 * close-on-exec, as with pipe(2); both belong to the caller.
 *
 * A saved capacity above /proc/sys/fs/pipe-max-size cannot be restored without
 * CAP_SYS_RESOURCE: that fails with EPERM and a message that says so, never silently
 * with a smaller pipe.
 *
 * Errors: EINVAL if image_path or fd is null, both numbers are equal, or the image is
 * invalid; ENOENT if image_path is not an image; EPERM as above; EBADF or EMFILE from
 * dup3(2)/fcntl(2); any error of reading the image (EACCES, EIO, ...). On failure fd[]
 * is unchanged and no new descriptor is left open (a descriptor that sat at a requested
 * number may have been closed already, as dup2 would have).
 *
 * Returns 0 on success, -1 on failure.
 */
int pipecr_restore_pipe(const char *image_path, int fd[2]);

/*
 * pipecr_last_error - describe the last failure on the calling thread.
 *
 * Returns a NUL-terminated message, in English, naming what failed (the descriptor, the
 * image path or file, the system call) and why, for example
 * "pipecr_checkpoint_pipe: fd 3 is a regular file, not a pipe or FIFO". The empty string
 * if no call has failed on this thread yet. Successful calls leave it unchanged, as with
 * errno.
 *
 * The string is owned by libpipecr: do not free it. It stays valid until the next call
 * of a pipecr function on the same thread; copy it to keep it longer.
 */
const char *pipecr_last_error(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PIPECR_H */
