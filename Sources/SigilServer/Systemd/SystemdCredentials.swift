import SigilPosix

/// systemd credentials (`LoadCredential=`, `LoadCredentialEncrypted=`): the service manager
/// places the decrypted key in a private directory only the service can read, so the key file
/// on disk never has to be readable by the service user.
public enum SystemdCredentials {
    /// Key paths may name a credential as `credential:NAME`, or use `$CREDENTIALS_DIRECTORY`
    /// (or `${CREDENTIALS_DIRECTORY}`) literally; both resolve against the environment.
    public static func resolve(_ path: String) -> String {
        let directory = Posix.environment("CREDENTIALS_DIRECTORY")
        if path.hasPrefix("credential:") {
            let name = String(path.dropFirst("credential:".count))
            return (directory ?? "$CREDENTIALS_DIRECTORY") + "/" + name
        }
        guard let directory else { return path }
        for token in ["${CREDENTIALS_DIRECTORY}", "$CREDENTIALS_DIRECTORY"] where path.hasPrefix(token) {
            return directory + path.dropFirst(token.count)
        }
        return path
    }
}
