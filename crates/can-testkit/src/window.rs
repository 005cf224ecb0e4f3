//! The desktop app's window from outside, as a desktop would see it (Linux, X11): closing it
//! the way a window manager's close button does (a `WM_DELETE_WINDOW` message), and the
//! app's process tree (WebKit's web and network processes are its children), and whether a
//! window shows a drawn page.

use std::ffi::CString;
use std::os::raw::{c_int, c_long, c_uchar, c_uint, c_ulong};
use std::ptr;

use x11_dl::xlib;

/// Runs `f` on a connection of our own to X display `display`.
fn with_display<T>(display: &str, f: impl FnOnce(&xlib::Xlib, *mut xlib::Display) -> T) -> T {
    let x = xlib::Xlib::open().expect("libX11");
    let name = CString::new(display).expect("display name");
    // SAFETY: the connection is ours, used only inside `f`, and closed after it.
    unsafe {
        let dpy = (x.XOpenDisplay)(name.as_ptr());
        assert!(!dpy.is_null(), "cannot open X display {display}");
        let out = f(&x, dpy);
        (x.XCloseDisplay)(dpy);
        out
    }
}

/// The mapped top-level windows (children of the root window) whose `_NET_WM_PID` is
/// `pid`, with their size.
///
/// # Safety
/// `dpy` must be an open connection made with `x`.
unsafe fn windows_of(
    x: &xlib::Xlib,
    dpy: *mut xlib::Display,
    pid: u32,
) -> Vec<(c_ulong, i32, i32)> {
    // SAFETY (for the whole body): every out-pointer is a local that outlives its call, and
    // what Xlib allocates is freed with XFree.
    unsafe {
        let atom = CString::new("_NET_WM_PID").expect("atom name");
        let net_wm_pid = (x.XInternAtom)(dpy, atom.as_ptr(), 0);
        let root = (x.XDefaultRootWindow)(dpy);
        let (mut r, mut p, mut kids, mut n): (c_ulong, c_ulong, *mut c_ulong, c_uint) =
            (0, 0, ptr::null_mut(), 0);
        (x.XQueryTree)(dpy, root, &mut r, &mut p, &mut kids, &mut n);
        let windows: Vec<c_ulong> = if kids.is_null() {
            Vec::new()
        } else {
            let v = std::slice::from_raw_parts(kids, n as usize).to_vec();
            (x.XFree)(kids.cast());
            v
        };
        let mut out = Vec::new();
        for w in windows {
            let (mut ty, mut format, mut items, mut after, mut data): (
                c_ulong,
                c_int,
                c_ulong,
                c_ulong,
                *mut c_uchar,
            ) = (0, 0, 0, 0, ptr::null_mut());
            let ok = (x.XGetWindowProperty)(
                dpy,
                w,
                net_wm_pid,
                0,
                1,
                0,
                xlib::XA_CARDINAL,
                &mut ty,
                &mut format,
                &mut items,
                &mut after,
                &mut data,
            ) == 0;
            let owner = if ok && items == 1 && format == 32 && !data.is_null() {
                // Format-32 properties come back as C longs.
                Some(*(data as *const c_long) as u32)
            } else {
                None
            };
            if !data.is_null() {
                (x.XFree)(data.cast());
            }
            let mut attrs: xlib::XWindowAttributes = std::mem::zeroed();
            (x.XGetWindowAttributes)(dpy, w, &mut attrs);
            if owner == Some(pid) && attrs.map_state == xlib::IsViewable {
                out.push((w, attrs.width, attrs.height));
            }
        }
        out
    }
}

/// Asks every mapped top-level window of process `pid` on `display` to close, as a window
/// manager does when its close button is clicked: a `WM_PROTOCOLS` client message carrying
/// `WM_DELETE_WINDOW` (ICCCM 4.2.8.1). GTK turns it into the window's delete event, which is
/// the app's `CloseRequested`. (No window manager runs under the tests' Xvfb, and WebDriver
/// has no command for the title bar.) Returns how many windows were asked.
pub fn close_windows_of(display: &str, pid: u32) -> usize {
    with_display(display, |x, dpy| {
        // SAFETY: `dpy` is open (with_display); the event is a plain struct sent by value.
        unsafe {
            let atom = |n: &str| {
                let c = CString::new(n).expect("atom name");
                (x.XInternAtom)(dpy, c.as_ptr(), 0)
            };
            let (protocols, delete) = (atom("WM_PROTOCOLS"), atom("WM_DELETE_WINDOW"));
            let windows = windows_of(x, dpy, pid);
            for &(w, _, _) in &windows {
                let mut msg = xlib::XClientMessageEvent {
                    type_: xlib::ClientMessage,
                    serial: 0,
                    send_event: 1,
                    display: dpy,
                    window: w,
                    message_type: protocols,
                    format: 32,
                    data: xlib::ClientMessageData::new(),
                };
                msg.data.set_long(0, delete as c_long);
                msg.data.set_long(1, xlib::CurrentTime as c_long);
                let mut ev = xlib::XEvent {
                    client_message: msg,
                };
                (x.XSendEvent)(dpy, w, 0, xlib::NoEventMask, &mut ev);
            }
            (x.XFlush)(dpy);
            windows.len()
        }
    })
}

/// How many mapped top-level windows of `pid` show a drawn page rather than one flat
/// colour: at least 3 colours among a 16 × 16 grid of sampled pixels (text, buttons and
/// backgrounds; an empty or still blank webview is one colour).
pub fn painted_windows_of(display: &str, pid: u32) -> usize {
    with_display(display, |x, dpy| {
        // SAFETY: `dpy` is open (with_display); each image is read within its bounds and
        // destroyed once.
        unsafe {
            windows_of(x, dpy, pid)
                .into_iter()
                .filter(|&(w, width, height)| {
                    if width < 16 || height < 16 {
                        return false;
                    }
                    let img = (x.XGetImage)(
                        dpy,
                        w,
                        0,
                        0,
                        width as c_uint,
                        height as c_uint,
                        (x.XAllPlanes)(),
                        xlib::ZPixmap,
                    );
                    if img.is_null() {
                        return false;
                    }
                    let mut colours = std::collections::HashSet::new();
                    for i in 0..16 {
                        for j in 0..16 {
                            let px = (x.XGetPixel)(img, width * i / 16, height * j / 16);
                            colours.insert(px);
                        }
                    }
                    (x.XDestroyImage)(img);
                    colours.len() >= 3
                })
                .count()
        }
    })
}

/// `root` and all its descendants, `root` first.
pub fn process_tree(root: u32) -> Vec<u32> {
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let parents: Vec<(u32, Option<u32>)> = all.iter().map(|&p| (p, stat_field(p, 1))).collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, parent)| *parent == Some(p))
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree
}

/// Field `n` after the command name in /proc/<pid>/stat (0: state, 1: parent pid, …).
fn stat_field<T: std::str::FromStr>(pid: u32, n: usize) -> Option<T> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
}

/// The process's name (/proc/<pid>/comm, cut at 15 bytes by the kernel).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_default()
}

/// WebKit's processes (web, network, …) among the descendants of `pid`: (pid, name).
/// Zombies are left out: they are gone, only not yet reaped.
pub fn webkit_processes(pid: u32) -> Vec<(u32, String)> {
    process_tree(pid)
        .into_iter()
        .skip(1)
        .filter(|&p| stat_field::<String>(p, 0).is_some_and(|s| s != "Z"))
        .map(|p| (p, comm(p)))
        .filter(|(_, name)| name.starts_with("WebKit"))
        .collect()
}
