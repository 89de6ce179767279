//! `powercut_fs MOUNTPOINT [SEED]`: mounts the power-cut filesystem (see
//! `weir_tests::powercut`) in the foreground until it is unmounted
//! (`fusermount3 -u MOUNTPOINT`). `echo cut > MOUNTPOINT/.powercut` discards
//! everything not fsynced; `echo "cut torn" > ...` keeps a random prefix of
//! appends that were not; `cat MOUNTPOINT/.powercut` prints counters.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(mountpoint) = args.next() else {
        eprintln!("usage: powercut_fs MOUNTPOINT [SEED]");
        return ExitCode::from(1);
    };
    let seed = args
        .next()
        .and_then(|s| s.to_str().and_then(|s| s.parse().ok()))
        .unwrap_or(1);
    let (fs, _handle) = weir_tests::powercut::new(seed);
    let opts = [
        fuser::MountOption::FSName("powercut".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    match fuser::mount2(fs, &mountpoint, &opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: mounting at {}: {e}", mountpoint.to_string_lossy());
            ExitCode::from(2)
        }
    }
}
