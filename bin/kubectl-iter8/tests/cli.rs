//! The binary's usage errors, without a cluster: exit code 2 for a bad command line and for a
//! kubeconfig that cannot be used (docs/kubectl.md, "Errors and exit codes").

use std::process::Command;

fn plugin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kubectl-iter8"))
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = plugin()
        .args(["get", "-n", "test", "-A"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn a_missing_kubeconfig_exits_2_and_says_so() {
    let out = plugin()
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "get"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: kubeconfig:"), "{err}");
}

#[test]
fn an_unknown_context_exits_2() {
    let dir = std::env::temp_dir().join(format!("kubectl-iter8-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: here\n  context: {cluster: c, user: u}\ncurrent-context: here\n",
    )
    .expect("write");
    let out = plugin()
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--context", "elsewhere", "get"])
        .output()
        .expect("runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("elsewhere"), "{err}");
}
