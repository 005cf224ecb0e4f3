//! A TUN device created inside a network namespace: the namespace's packets to the testbed
//! network come out of the returned file, and what is written to it goes in.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

/// Opens TUN device `ifname` in the named namespace (`/var/run/netns/<netns>`). A short
/// thread enters the namespace to create it; the file works from any thread afterwards.
pub fn open_in(netns: &str, ifname: &str) -> io::Result<File> {
    let ns_path = format!("/var/run/netns/{netns}");
    let ifname = ifname.to_owned();
    std::thread::spawn(move || -> io::Result<File> {
        let ns = File::open(&ns_path)?;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")?;
        let bytes = ifname.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        // SAFETY: ifreq is plain data; all-zero is a valid value (an empty name, no flags).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads an ifreq we own for the duration of the call.
        if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| io::Error::other("tun thread panicked"))?
}
