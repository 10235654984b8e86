import Foundation
import Testing

@testable import SigilTooling

@Suite("--output: atomic replacement")
struct AtomicFileTests {
    static func scratch() throws -> String {
        let path = NSTemporaryDirectory() + "sigil-atomic-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    @Test("mode 0644 whatever the umask, contents replaced, a new inode, no temporary file left")
    func replaces() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/sigil.prom"
        let previous = umask(0o077)
        defer { umask(previous) }
        try AtomicFile.write(Array("one\n".utf8), to: path)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one\n")
        #expect(try Self.mode(path) == 0o644)
        let firstInode = try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber
        // A reader holding the old file keeps reading the old contents: the file is replaced, not rewritten.
        let reader = try #require(FileHandle(forReadingAtPath: path))
        try AtomicFile.write(Array("two\n".utf8), to: path)
        #expect(String(decoding: reader.readDataToEndOfFile(), as: UTF8.self) == "one\n")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "two\n")
        let secondInode = try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber
        #expect(firstInode != secondInode)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["sigil.prom"])
    }

    @Test("a relative name writes in the working directory")
    func relative() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let previous = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(directory))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(previous) }
        try AtomicFile.write(Array("x".utf8), to: "plain.prom")
        #expect(try String(contentsOfFile: directory + "/plain.prom", encoding: .utf8) == "x")
    }

    @Test("failures name the file and the directory, and leave nothing behind")
    func failures() throws {
        let directory = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect {
            try AtomicFile.write([1], to: directory + "/missing/sigil.prom")
        } throws: { error in
            "\(error)".hasPrefix("cannot write \(directory)/missing/sigil.prom: open(\(directory)/missing/.sigil.prom.tmp-")
                && "\(error)".hasSuffix("): No such file or directory")
        }
        // A directory where the file should be: the rename fails, and the temporary file goes.
        try FileManager.default.createDirectory(atPath: directory + "/taken.prom/inner", withIntermediateDirectories: true)
        #expect {
            try AtomicFile.write([1], to: directory + "/taken.prom")
        } throws: { error in
            "\(error)".hasPrefix("cannot write \(directory)/taken.prom: rename(\(directory)/.taken.prom.tmp-")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["taken.prom"])
        #expect { try AtomicFile.write([1], to: directory + "/") } throws: { "\($0)".contains("expected a file name") }
    }
}
