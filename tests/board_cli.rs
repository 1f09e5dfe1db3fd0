//! `outpost board`: autodetection from fixture device trees, profile overrides, inherit cycles.

mod support;

use support::{device_tree, run, Sandbox};

fn detect_on(board_fixture: &str) -> support::Run {
    let sandbox = Sandbox::new();
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_SYSROOT", device_tree(board_fixture)).args(["board", "detect"]);
    run(&mut cmd)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[test]
fn orin_nano_devkit_is_detected_by_module_sku() {
    let out = detect_on("orin-nano-devkit");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(first_line(&out.stdout), "jetson-orin-nano");
    assert!(out.stdout.contains("nvidia,p3767-0005"), "{}", out.stdout);
}

#[test]
fn jetson_nano_is_detected() {
    let out = detect_on("jetson-nano");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(first_line(&out.stdout), "jetson-nano");
}

#[test]
fn raspberry_pi_5_is_detected() {
    let out = detect_on("raspberry-pi-5");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(first_line(&out.stdout), "raspberry-pi-5");
}

#[test]
fn unknown_aarch64_board_falls_back_to_generic() {
    let out = detect_on("rockpro64-unknown");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(first_line(&out.stdout), "generic-aarch64");
    assert!(out.stdout.contains("architecture aarch64"), "{}", out.stdout);
}

#[test]
fn every_fixture_board_maps_to_its_profile() {
    let expected = [
        ("orin-nano-devkit-super", "jetson-orin-nano"),
        ("orin-nx-16gb", "jetson-orin-nx"),
        ("xavier-nx", "jetson-xavier-nx"),
        ("agx-orin", "jetson-agx-orin"),
        ("raspberry-pi-4", "raspberry-pi-4"),
        ("x86-pc", "x86_64-dev"),
    ];
    for (fixture, profile) in expected {
        let out = detect_on(fixture);
        assert_eq!(out.code, 0, "{fixture}: {}", out.stderr);
        assert_eq!(first_line(&out.stdout), profile, "{fixture}");
    }
}

#[test]
fn profile_with_unknown_key_names_file_and_key() {
    let sandbox = Sandbox::new();
    let file = sandbox.write(
        "boards/my-board.toml",
        "description = \"mine\"\ninherit = \"generic-aarch64\"\n[inference]\nthraeds = 2\n",
    );
    let out = run(sandbox.outpost().args(["board", "list"]));
    assert_eq!(out.code, 3, "config errors exit 3: {}", out.stderr);
    assert!(out.stderr.contains(&file.display().to_string()), "{}", out.stderr);
    assert!(out.stderr.contains("inference.thraeds"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `inference.threads`"), "{}", out.stderr);
}

#[test]
fn inherit_cycle_is_refused() {
    let sandbox = Sandbox::new();
    sandbox.write("boards/loop-a.toml", "description = \"a\"\ninherit = \"loop-b\"\n[match]\nmodel = [\"A\"]\n");
    sandbox.write("boards/loop-b.toml", "description = \"b\"\ninherit = \"loop-a\"\n[match]\nmodel = [\"B\"]\n");
    let out = run(sandbox.outpost().args(["board", "show", "loop-a"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("cycle"), "{}", out.stderr);
    assert!(out.stderr.contains("loop-a -> loop-b -> loop-a") || out.stderr.contains("loop-b -> loop-a -> loop-b"));
}

#[test]
fn disk_profile_overrides_embedded_and_is_used_for_detection() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "boards/rockpro64.toml",
        "description = \"Pine64 RockPro64\"\ninherit = \"generic-aarch64\"\n\
         [match]\ncompatible = [\"pine64,rockpro64\"]\n[inference]\nthreads = 6\n",
    );
    let mut cmd = sandbox.outpost();
    cmd.env("OUTPOST_SYSROOT", device_tree("rockpro64-unknown")).args(["board", "detect"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(first_line(&out.stdout), "rockpro64");

    let show = run(sandbox.outpost().args(["board", "show", "rockpro64"]));
    assert!(show.stdout.contains("inherits: generic-aarch64 -> rockpro64"), "{}", show.stdout);
    assert!(show.stdout.lines().any(|l| l.starts_with("inference.threads") && l.contains("= 6")));
}

#[test]
fn show_unknown_profile_lists_the_known_ones() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["board", "show", "jetson-tx2"]));
    assert_eq!(out.code, 3);
    assert!(out.stderr.contains("jetson-tx2") && out.stderr.contains("jetson-orin-nano"), "{}", out.stderr);
}

#[test]
fn list_names_all_embedded_profiles() {
    let sandbox = Sandbox::new();
    let out = run(sandbox.outpost().args(["board", "list"]));
    assert_eq!(out.code, 0);
    for name in [
        "jetson-nano",
        "jetson-xavier-nx",
        "jetson-orin-nano",
        "jetson-orin-nx",
        "jetson-agx-orin",
        "raspberry-pi-4",
        "raspberry-pi-5",
        "generic-aarch64",
        "x86_64-dev",
    ] {
        assert!(out.stdout.lines().any(|l| l.starts_with(name)), "{name} missing:\n{}", out.stdout);
    }
}

#[test]
fn a_profile_cache_dir_reaching_volatile_storage_through_dots_or_symlinks_is_refused() {
    let sandbox = Sandbox::new();
    // A symlink of our own into /dev/shm stands in for /var/run -> /run on a board.
    let link = sandbox.path().join("state");
    std::os::unix::fs::symlink("/dev/shm", &link).unwrap();
    let via_link = link.join("outpost").display().to_string();
    for dir in ["/var/../tmp/outpost", "/var/./tmp/outpost", via_link.as_str()] {
        sandbox.write("boards/mine.toml", &format!("description = \"test\"\n[cache]\ndir = \"{dir}\"\n"));
        let out = run(sandbox.outpost().args(["--board", "mine", "config"]));
        assert_eq!(out.code, 3, "{dir}: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("cache.dir"), "{dir}: {}", out.stderr);
    }
    sandbox.write("boards/mine.toml", "description = \"test\"\n[cache]\ndir = \"/var/lib/outpost/cache\"\n");
    assert_eq!(run(sandbox.outpost().args(["--board", "mine", "config"])).code, 0);
}
