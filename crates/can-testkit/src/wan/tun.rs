//! A TUN device created inside a network namespace: the namespace's packets to the testbed
//! network come out of the returned file, and what is written to it goes in.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

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
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        let bytes = ifname.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
        }
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: TUNSETIFF reads an ifreq we own for the duration of the call.
        if unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tun)
    })
    .join()
    .map_err(|_| io::Error::other("tun thread panicked"))?
}
