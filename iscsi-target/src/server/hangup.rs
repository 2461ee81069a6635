//! Seeing that an initiator has gone before its session's task does.
//!
//! A session ends when its reader task reads end-of-file, but that task
//! may not run for a while on a busy machine. An initiator that drops its
//! connection and logs straight in again (libiscsi's
//! PreventAllow.ITNexusLoss does exactly this) must not find the old
//! nexus's PREVENT MEDIUM REMOVAL or RESERVE still in force: its FIN
//! reached the kernel before the new connection's SYN, so a new session
//! asks the kernel, not the old task, which connections are gone.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

/// A duplicate of a session's socket, kept only to ask whether the peer
/// has hung up. Being a duplicate, its descriptor cannot be closed and
/// reused under it while the session's own halves come and go.
pub struct HangupProbe(OwnedFd);

impl HangupProbe {
    pub fn new(socket: &impl AsFd) -> io::Result<HangupProbe> {
        Ok(HangupProbe(socket.as_fd().try_clone_to_owned()?))
    }

    /// Whether the peer has closed or reset the connection, without
    /// waiting. Unread data does not matter: an iSCSI initiator never
    /// half-closes a connection it still uses.
    pub fn hung_up(&self) -> bool {
        let mut fds = [PollFd::new(&self.0, PollFlags::RDHUP)];
        let now = Timespec { tv_sec: 0, tv_nsec: 0 };
        match poll(&mut fds, Some(&now)) {
            Ok(n) if n > 0 => fds[0].revents().intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sees_a_close_and_not_a_live_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let probe = HangupProbe::new(&server_side).unwrap();
        client.write_all(b"pending bytes are not a hang-up").unwrap();
        assert!(!probe.hung_up());
        drop(client);
        // The FIN crosses loopback at once, but allow the kernel a moment.
        let seen = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(1));
            probe.hung_up()
        });
        assert!(seen, "the probe did not see the peer close");
    }
}
