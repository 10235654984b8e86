import Logging
import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// What the daemon does to itself before it touches a key.
public enum ProcessHardening {
    /// Non-dumpable (no core files; other processes of our user cannot ptrace us or read our
    /// memory), core size 0, and SIGPIPE ignored (libuv writes with write(2); a client that
    /// goes away must not kill the daemon). Failures are logged: they weaken, not break.
    public static func apply(logger: Logger) {
        do {
            try Posix.setNonDumpable()
        } catch {
            logger.warning("cannot make the process non-dumpable: \(error)")
        }
        do {
            try Posix.disableCoreDumps()
        } catch {
            logger.warning("cannot disable core dumps: \(error)")
        }
        Posix.ignoreSIGPIPE()
        Posix.unblockSignals([SIGTERM, SIGINT, SIGHUP])
    }
}
