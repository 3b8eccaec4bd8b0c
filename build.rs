//! Generates the raw libvirt bindings with bindgen, finding libvirt with pkg-config.
//!
//! When a build dependency is missing the build stops with one line that names the
//! Debian package to install, instead of a linker error or a bindgen backtrace.

use std::env;
use std::path::PathBuf;

/// Oldest libvirt this crate is tested against (Debian 12 ships 9.0.0). Every call we
/// make exists since 1.x, so this is a conservative floor, not a feature requirement.
const MIN_LIBVIRT: &str = "6.0.0";

/// Only the functions we call, so the generated module stays small and reviewable.
const FUNCTIONS: &[&str] = &[
    "virConnectOpen",
    "virConnectOpenReadOnly",
    "virConnectClose",
    "virConnectGetURI",
    "virConnectIsAlive",
    "virConnectNumOfDomains",
    "virConnectListDomains",
    "virDomainLookupByID",
    "virDomainFree",
    "virDomainGetName",
    "virDomainGetUUID",
    "virDomainGetID",
    "virDomainGetInfo",
    "virDomainGetVcpus",
    "virDomainPinVcpu",
    "virDomainPinVcpuFlags",
    "virDomainGetVcpuPinInfo",
    "virNodeGetInfo",
    "virNodeGetCPUStats",
    "virDomainIsActive",
    "virGetLastError",
    "virResetLastError",
    "virSetErrorFunc",
    "virConnectGetAllDomainStats",
    "virDomainStatsRecordListFree",
    // The event loop, lifecycle events, keepalive and the close callback.
    "virEventRegisterDefaultImpl",
    "virEventRunDefaultImpl",
    "virEventAddTimeout",
    "virEventUpdateTimeout",
    "virEventRemoveTimeout",
    "virEventAddHandle",
    "virEventRemoveHandle",
    "virConnectDomainEventRegisterAny",
    "virConnectDomainEventDeregisterAny",
    "virConnectSetKeepAlive",
    "virConnectRegisterCloseCallback",
    "virConnectUnregisterCloseCallback",
    // Owners' pins (persistent configuration) and vCPU hotplug.
    "virDomainIsPersistent",
    "virDomainGetMaxVcpus",
    // The host's shape and where domains' memory lives.
    "virConnectGetCapabilities",
    "virDomainGetNumaParameters",
    "virTypedParamsClear",
];

fn stop(msg: &str) -> ! {
    println!("cargo::error={msg}");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_LIBVIRT)
        .probe("libvirt")
    {
        Ok(lib) => lib,
        Err(e) => {
            let first = e.to_string();
            let first = first
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("pkg-config failed");
            stop(&format!(
                "libvirt >= {MIN_LIBVIRT} not found by pkg-config ({first}); \
                 install it with: apt-get install libvirt-dev pkg-config"
            ))
        }
    };

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .allowlist_type("vir.*")
        .allowlist_var("VIR_.*")
        // Constified modules: compared with `==`, usable as `match` patterns without warnings.
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .layout_tests(false);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for dir in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", dir.display()));
    }

    // bindgen panics when it cannot load libclang; turn that into one actionable line.
    std::panic::set_hook(Box::new(|_| {}));
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    let _ = std::panic::take_hook();
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => stop(&format!("bindgen could not parse wrapper.h: {e}")),
        Err(_) => {
            stop("libclang not found for bindgen; install it with: apt-get install libclang-dev")
        }
    };

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = bindings.write_to_file(out.join("bindings.rs")) {
        stop(&format!("cannot write bindings to OUT_DIR: {e}"));
    }
}
