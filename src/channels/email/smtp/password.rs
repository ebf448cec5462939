//! Where the SMTP password comes from: FlyteAdmin's secret convention, or a file the operator
//! names. Errors name the place that was read, never what it holds.

use std::path::Path;

/// FlyteAdmin's secret convention: env `FLYTE_SECRET_<name>`, else the file `<dir>/<name>`,
/// trailing whitespace trimmed.
pub fn read_secret(name: &str, dir: &Path) -> Result<String, String> {
    if let Ok(value) = std::env::var(format!("FLYTE_SECRET_{name}")) {
        return Ok(value.trim_end().to_string());
    }
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| {
            format!(
                "secret {name:?}: FLYTE_SECRET_{name} is not set and {} cannot be read: {e}",
                path.display()
            )
        })
}

/// The password in the file at `path` (`flyteNotify.smtp.passwordFile`), trailing whitespace
/// trimmed as `read_secret` does: files written by `echo` and Kubernetes secrets end in a newline
/// that is no part of the password. An empty file is an error, since an empty password can only
/// ever be refused.
pub fn read_password_file(path: &Path) -> Result<String, String> {
    let value = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "flyteNotify.smtp.passwordFile: cannot read {}: {e}",
            path.display()
        )
    })?;
    let value = value.trim_end();
    if value.is_empty() {
        return Err(format!(
            "flyteNotify.smtp.passwordFile: {} is empty",
            path.display()
        ));
    }
    Ok(value.to_string())
}

/// The SMTP password from whichever source the config names: `password_file` (ours), or
/// `secret_name` (FlyteAdmin's `smtpPasswordSecretName`, looked up by `read_secret` in
/// `secrets_dir`). Neither: the empty password, as FlyteAdmin sends. Both: an error, since
/// silently preferring one would leave the operator guessing which password was refused.
pub fn smtp_password(
    secret_name: &str,
    password_file: Option<&Path>,
    secrets_dir: &Path,
) -> Result<String, String> {
    match (secret_name.is_empty(), password_file) {
        (true, None) => Ok(String::new()),
        (true, Some(file)) => read_password_file(file),
        (false, None) => read_secret(secret_name, secrets_dir),
        (false, Some(_)) => Err(
            "notifications.emailer.emailServerConfig.smtpPasswordSecretName and \
             flyteNotify.smtp.passwordFile both name the SMTP password: keep one"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_is_trimmed_and_errors_never_hold_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cr3t pass\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap(), "s3cr3t pass");

        std::fs::write(&file, " \n").unwrap();
        let e = read_password_file(&file).unwrap_err();
        assert!(
            e.contains("flyteNotify.smtp.passwordFile") && e.contains("empty"),
            "{e}"
        );

        let e = read_password_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn one_source_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        std::fs::write(dir.path().join("smtp_unit_pw"), "from-secret\n").unwrap();

        assert_eq!(smtp_password("", None, dir.path()).unwrap(), "");
        assert_eq!(
            smtp_password("", Some(&file), dir.path()).unwrap(),
            "from-file"
        );
        assert_eq!(
            smtp_password("smtp_unit_pw", None, dir.path()).unwrap(),
            "from-secret"
        );
        let e = smtp_password("smtp_unit_pw", Some(&file), dir.path()).unwrap_err();
        assert!(
            e.contains("smtpPasswordSecretName") && e.contains("passwordFile"),
            "{e}"
        );
        assert!(!e.contains("from-"), "{e}");
    }
}
