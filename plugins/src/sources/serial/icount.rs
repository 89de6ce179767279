//! The UART driver's own error counters (Linux `TIOCGICOUNT`): bytes the
//! hardware or the driver dropped because nobody read them in time
//! (overruns), and framing and parity errors. This is how loss *below* the
//! agent becomes visible when a full channel holds the source back under
//! `when_full: block`. Pseudo-terminals and most USB adapters do not keep
//! these counters; there the ioctl fails and nothing is reported.

use std::os::fd::RawFd;

/// Error counts since the port was opened (by the driver's reckoning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverCounts {
    pub overrun: u64,
    pub buffer_overrun: u64,
    pub framing: u64,
    pub parity: u64,
}

impl DriverCounts {
    /// The increase from `before` to `self`, per kind (a counter reset gives 0).
    pub fn since(&self, before: &DriverCounts) -> [(&'static str, u64); 4] {
        [
            ("overrun", self.overrun.saturating_sub(before.overrun)),
            (
                "buffer_overrun",
                self.buffer_overrun.saturating_sub(before.buffer_overrun),
            ),
            ("framing", self.framing.saturating_sub(before.framing)),
            ("parity", self.parity.saturating_sub(before.parity)),
        ]
    }
}

/// `struct serial_icounter_struct` from `<linux/serial.h>`.
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SerialIcounter {
    cts: libc::c_int,
    dsr: libc::c_int,
    rng: libc::c_int,
    dcd: libc::c_int,
    rx: libc::c_int,
    tx: libc::c_int,
    frame: libc::c_int,
    overrun: libc::c_int,
    parity: libc::c_int,
    brk: libc::c_int,
    buf_overrun: libc::c_int,
    reserved: [libc::c_int; 9],
}

/// The driver's counts for the open port `fd`, or `None` where the driver
/// keeps none.
#[cfg(target_os = "linux")]
pub fn read(fd: RawFd) -> Option<DriverCounts> {
    let mut c = SerialIcounter::default();
    // SAFETY: `fd` is an open descriptor for the duration of the call and
    // `c` is a properly sized, writable serial_icounter_struct.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGICOUNT, &mut c as *mut SerialIcounter) };
    if r != 0 {
        return None;
    }
    let n = |v: libc::c_int| u64::from(v.max(0) as u32);
    Some(DriverCounts {
        overrun: n(c.overrun),
        buffer_overrun: n(c.buf_overrun),
        framing: n(c.frame),
        parity: n(c.parity),
    })
}

/// Not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn read(_fd: RawFd) -> Option<DriverCounts> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increases_are_per_kind_and_never_negative() {
        let a = DriverCounts {
            overrun: 5,
            buffer_overrun: 1,
            framing: 0,
            parity: 2,
        };
        let b = DriverCounts {
            overrun: 8,
            buffer_overrun: 1,
            framing: 3,
            parity: 0,
        };
        assert_eq!(
            b.since(&a),
            [
                ("overrun", 3),
                ("buffer_overrun", 0),
                ("framing", 3),
                ("parity", 0)
            ]
        );
    }

    #[test]
    fn a_pseudo_terminal_keeps_no_driver_counts() {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the null pointers mean no
        // name, termios or window size.
        let r = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(r, 0);
        assert_eq!(read(slave), None);
        // SAFETY: closing the descriptors openpty gave us.
        unsafe {
            libc::close(master);
            libc::close(slave);
        }
    }
}
