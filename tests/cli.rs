//! The command line an operator uses: check-config and serve's config errors.

mod common;

use std::process::Command;

use common::BIN;

fn check_config(yaml: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SMTP: &str = r#"
admin:
  endpoint: dns:///localhost:8089
notifications:
  type: local
  emailer:
    subject: "Execution {{ name }} {{ phase }} {{ owner }}"
    sender: flyte@example.com
    body: "{{ error }}"
    emailServerConfig:
      serviceName: smtp
      smtpServer: mail.example.com
      smtpPort: "587"
      smtpUsername: relay-user
      smtpPasswordSecretName: smtp_pw
"#;

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let (code, stdout, stderr) = check_config(SMTP, &[("FLYTE_SECRET_smtp_pw", "hunter2")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("smtpServer: mail.example.com"), "{stdout}");
    assert!(
        stdout.contains("smtpPasswordSecretName: smtp_pw"),
        "{stdout}"
    );
    assert!(stdout.contains("listen: 127.0.0.1:8091"), "{stdout}");
    assert!(!stdout.contains("relay-user"), "{stdout}");
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    // The unknown template name is a warning, not an error, as in FlyteAdmin.
    assert!(
        stderr.contains(
            "warning: notifications.emailer.subject: {{ owner }} names no known variable"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("config OK"), "{stderr}");
}

#[test]
fn check_config_fails_when_the_smtp_secret_is_missing() {
    let (code, _, stderr) = check_config(SMTP, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("FLYTE_SECRET_smtp_pw is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("/etc/secrets/smtp_pw"), "{stderr}");
}

#[test]
fn unknown_keys_are_errors_that_name_the_key() {
    for (yaml, path, key) in [
        (
            "notifications:\n  emailer:\n    subjekt: x\n",
            "notifications.emailer",
            "subjekt",
        ),
        (
            "notifications:\n  procesor: {}\n",
            "notifications",
            "procesor",
        ),
        (
            "flyteNotify:\n  listen: 127.0.0.1:1\n  dataDirectory: /tmp\n",
            "flyteNotify",
            "dataDirectory",
        ),
        (
            "flyteNotify:\n  retry: { maxAttempt: 3 }\n",
            "flyteNotify.retry",
            "maxAttempt",
        ),
    ] {
        let (code, _, stderr) = check_config(yaml, &[]);
        assert_eq!(code, 2, "{yaml}");
        assert!(
            stderr.contains(path) && stderr.contains(key),
            "{yaml}: {stderr}"
        );
    }
}

#[test]
fn invalid_values_are_errors_that_name_the_key() {
    for (yaml, key) in [
        ("notifications:\n  type: kafka\n", "notifications.type"),
        (
            "notifications:\n  emailer:\n    emailServerConfig: { serviceName: smtp }\n",
            "smtpServer",
        ),
        (
            "notifications:\n  emailer:\n    emailServerConfig: { serviceName: smtp, smtpServer: h, smtpPort: x }\n",
            "smtpPort",
        ),
        (
            "notifications:\n  emailer:\n    sender: not-an-address\n",
            "notifications.emailer.sender",
        ),
        (
            "flyteNotify:\n  retry: { maxAttempts: 0 }\n",
            "flyteNotify.retry.maxAttempts",
        ),
        (
            "flyteNotify:\n  consoleUrl: flyte.example.com\n",
            "flyteNotify.consoleUrl",
        ),
        (
            "flyteNotify:\n  shutdownDeadline: soon\n",
            "flyteNotify.shutdownDeadline",
        ),
    ] {
        let (code, _, stderr) = check_config(yaml, &[]);
        assert_eq!(code, 2, "{yaml}");
        assert!(stderr.contains(key), "{yaml}: {stderr}");
    }
}

#[test]
fn serve_refuses_an_invalid_config_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "notifications:\n  emailer:\n    subjekt: x\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("subjekt"), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// The errors an operator reads: each names the file once, the key and its line, and suggests the
/// likely intent; none mentions a feature that does not exist.
#[test]
fn a_misspelled_or_missing_section_is_an_error_that_names_the_intended_one() {
    for (yaml, expected) in [
        (
            "notification:\n  emailer:\n    sender: flyte@example.com\n",
            "notification: not a section flyte-notify reads; did you mean `notifications`?",
        ),
        (
            "server:\n  httpPort: 8088\nflytenotify:\n  consoleUrl: https://flyte.example.com\n",
            "flytenotify: not a section flyte-notify reads; did you mean `flyteNotify`?",
        ),
        (
            "server:\n  httpPort: 8088\ndatabase:\n  postgres: { host: db }\n",
            "has neither a `notifications:` nor a `flyteNotify:` section",
        ),
    ] {
        let (code, stdout, stderr) = check_config(yaml, &[]);
        assert_eq!(code, 2, "{yaml}: {stderr}");
        assert!(stderr.contains(expected), "{yaml}: {stderr}");
        assert!(!stderr.contains("config OK"), "{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }
    // The line of the typo, for a file where it is not the first.
    let (_, _, stderr) = check_config("# flyte-notify\n\nnotification:\n  type: local\n", &[]);
    assert!(stderr.contains("(line 3, column 1)"), "{stderr}");
}

#[test]
fn errors_print_the_file_once_with_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "notifications:\n  emailer:\n    sender: flyte@example.com\n    subjekt: x\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches(&*path.display().to_string()).count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("notifications.emailer").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("unknown field `subjekt`"), "{stderr}");
    assert!(stderr.contains("(line 4, column 5)"), "{stderr}");

    // A syntax error is where the parser stopped, not at some key it had reached.
    let (code, _, stderr) =
        check_config("notifications:\n  emailer:\n    subject: \"unclosed\n", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not valid YAML at line"), "{stderr}");
    assert!(!stderr.contains(".?"), "{stderr}");
}

#[test]
fn enum_values_take_any_case_and_typos_get_a_suggestion() {
    let smtp = |name: &str| {
        format!(
            "notifications:\n  emailer:\n    emailServerConfig:\n      serviceName: {name}\n      smtpServer: mail.example.com\n"
        )
    };
    let (code, stdout, stderr) = check_config(&smtp("SMTP"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("serviceName: smtp"), "{stdout}");
    let (code, _, _) = check_config("notifications:\n  type: Sandbox\n", &[]);
    assert_eq!(code, 0);

    let (code, _, stderr) = check_config(&smtp("smpt"), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("notifications.emailer.emailServerConfig.serviceName")
            && stderr.contains("did you mean smtp?"),
        "{stderr}"
    );
    // A cloud queue needs its names; the error says which.
    let (code, _, stderr) = check_config("notifications:\n  type: gcp\n", &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("notifications.gcp.projectId"), "{stderr}");
    let (code, _, stderr) = check_config("notifications:\n  type: AWS\n", &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("notifications.publisher.topicName"),
        "{stderr}"
    );
    // `aws` chooses SES by the queue type in FlyteAdmin, never as a serviceName: the answer says
    // what does work.
    let (code, _, stderr) = check_config(&smtp("aws"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("serviceName: ses"), "{stderr}");
    let (code, _, stderr) = check_config(&smtp("sendgird"), &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("did you mean sendgrid?"), "{stderr}");
    let (code, stdout, stderr) = check_config(&smtp("SES"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("serviceName: ses"), "{stdout}");
}

const SENDGRID: &str = r#"
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: sendgrid
      apiKeyEnvVar: FLYTE_NOTIFY_TEST_SG_KEY
"#;

#[test]
fn check_config_reads_the_sendgrid_key_and_never_shows_it() {
    let (code, stdout, stderr) =
        check_config(SENDGRID, &[("FLYTE_NOTIFY_TEST_SG_KEY", "SG.abc.s3cr3t")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("apiKeyEnvVar: FLYTE_NOTIFY_TEST_SG_KEY"),
        "{stdout}"
    );
    assert!(
        stdout.contains("baseUrl: https://api.sendgrid.com"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3t") && !stderr.contains("s3cr3t"));

    let (code, _, stderr) = check_config(SENDGRID, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("apiKeyEnvVar: the environment variable FLYTE_NOTIFY_TEST_SG_KEY"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sendgrid-key");
    let from_file = |path: &std::path::Path| {
        SENDGRID.replace(
            "apiKeyEnvVar: FLYTE_NOTIFY_TEST_SG_KEY",
            &format!("apiKeyFilePath: {}", path.display()),
        )
    };
    let (code, _, stderr) = check_config(&from_file(&key), &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("apiKeyFilePath: cannot read the SendGrid API key from"),
        "{stderr}"
    );
    std::fs::write(&key, "SG.abc.s3cr3t\n").unwrap();
    let (code, _, stderr) = check_config(&from_file(&key), &[]);
    assert_eq!(code, 0, "{stderr}");

    // Naming neither is a config error before any secret is looked for.
    let neither = SENDGRID.replace("      apiKeyEnvVar: FLYTE_NOTIFY_TEST_SG_KEY\n", "");
    let (code, _, stderr) = check_config(&neither, &[]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("notifications.emailer.emailServerConfig.apiKeyEnvVar"),
        "{stderr}"
    );
    let bad_url = format!("{SENDGRID}flyteNotify:\n  sendgrid: {{ baseUrl: api.sendgrid.com }}\n");
    let (code, _, stderr) = check_config(&bad_url, &[("FLYTE_NOTIFY_TEST_SG_KEY", "k")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("flyteNotify.sendgrid.baseUrl"), "{stderr}");
}

#[test]
fn check_config_says_the_built_in_email_has_no_link_without_a_console_url() {
    let (code, _, stderr) = check_config("notifications:\n  type: local\n", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(
            "note: flyteNotify.consoleUrl is not set, so the built-in email carries no link"
        ),
        "{stderr}"
    );
    let (_, _, stderr) = check_config(
        "flyteNotify:\n  consoleUrl: https://flyte.example.com/console\n",
        &[],
    );
    assert!(!stderr.contains("consoleUrl is not set"), "{stderr}");
}
