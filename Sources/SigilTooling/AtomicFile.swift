import SigilPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Replaces a file so that readers see the old contents or the new, never a part: node_exporter
/// reads its textfile directory at any moment, and a half-written file would be a scrape error.
public enum AtomicFile {
    /// Writes `bytes` to a temporary file in `path`'s directory (so the rename stays on one file
    /// system), sets `mode` exactly (whatever the umask), fsyncs, renames it over `path`, then
    /// fsyncs the directory. The temporary name starts with a dot and does not end in `.prom`,
    /// so collectors that read `*.prom` never see it. On failure it is removed.
    public static func write(_ bytes: [UInt8], to path: String, mode: UInt32 = 0o644) throws(ToolError) {
        guard !path.isEmpty, !path.hasSuffix("/") else { throw ToolError("--output \(ToolError.quoting(path)): expected a file name") }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = (directory == "/" ? "" : directory) + "/.\(name).tmp-\(Posix.pid)-\(UInt32.random(in: 0...UInt32.max))"
        // PosixError names the call and its paths (open, rename); write, fchmod and fsync get
        // the temporary file's name here.
        func fail(_ error: PosixError) -> ToolError { ToolError("cannot write \(path): \(error)") }
        func fail(_ step: String, _ error: PosixError) -> ToolError { ToolError("cannot write \(path): \(step) \(temporary): \(error)") }
        let fd: Int32
        do {
            fd = try Posix.open(temporary, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: mode)
        } catch {
            throw fail(error)
        }
        var renamed = false
        defer { if !renamed { try? Posix.unlink(temporary) } }
        do {
            defer { Posix.close(fd) }
            do { try Posix.fchmod(fd, mode) } catch { throw fail("setting the mode of", error) }
            let written = bytes.withUnsafeBytes { raw in Result { () throws(PosixError) in try Posix.writeAll(fd, raw) } }
            do { try written.get() } catch { throw fail("writing", error) }
            do { try Posix.fsync(fd) } catch { throw fail("flushing", error) }
        }
        do { try Posix.rename(temporary, path) } catch { throw fail(error) }
        renamed = true
        // The rename is durable once the directory is: a crash just after it must not bring
        // back the old file (or none).
        if let directoryFD = try? Posix.open(directory, flags: O_RDONLY | O_DIRECTORY) {
            try? Posix.fsync(directoryFD)
            Posix.close(directoryFD)
        }
    }
}
