public import ArgumentParser
public import SigilCore
import SigilPosix

extension KeyFileFormat: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(rawValue: argument)
    }
}

/// A failure a tool reports on stderr before exiting non-zero. Never holds key material.
public struct ToolError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// A command-line value to quote in an error, with every run of 40 or more base64 characters
    /// replaced by its length: it may be a seed given by mistake where a public key belongs (a
    /// Synapse key line's third field looks just like one), and errors never print key material.
    public static func quoting(_ value: String) -> String {
        var out = ""
        var run = ""
        func flush() {
            out += run.count >= 40 ? "<\(run.count) base64 characters>" : run
            run = ""
        }
        for character in value {
            if character.isASCII && (character.isLetter || character.isNumber || "+/-_".contains(character)) {
                run.append(character)
            } else {
                flush()
                out.append(character)
            }
        }
        flush()
        return "'\(out)'"
    }
}

/// The key-file workflows behind `generate_signing_key`, `combine_signing_keys` and `sigil keys`.
public enum KeyTools {
    /// Tools hold keys only for a moment; refusing to run on a small RLIMIT_MEMLOCK would help no one.
    public static let lockPolicy: MemoryLockPolicy = .warn

    /// Reads a key file, printing warnings (permissions, odd key IDs) to stderr.
    public static func load(_ path: String) throws -> KeyFile {
        let (file, warnings) = try KeyFileIO.read(path, permissions: .warn, lockPolicy: lockPolicy)
        for warning in warnings {
            if case .notLocked = warning { continue }
            Posix.printError(warning.description)
        }
        return file
    }

    /// Generates a new key in MMR's style (or converts the first key of `input`) and writes it.
    /// Returns the key's ID.
    @discardableResult
    public static func generate(output: String, format: KeyFileFormat, input: String?) throws -> SigningKey {
        let key: SigningKey
        if let input {
            let file = try load(input)
            key = try file.loadKeys(lockPolicy: lockPolicy)[0]
        } else {
            var builder = try KeyArena.Builder(capacity: 1, lockPolicy: lockPolicy)
            let (slot, publicKey) = builder.addRandom()
            key = SigningKey(id: KeyID.random(), publicKey: publicKey, arena: builder.finish(), slot: slot)
        }
        try write([key], format: format, to: output)
        return key
    }

    /// Reads every input in order and writes all their keys, refusing duplicate key versions.
    public static func combine(inputs: [String], format: KeyFileFormat, output: String) throws -> [SigningKey] {
        guard !inputs.isEmpty else { throw ToolError("no input files: name the key files to combine, the homeserver's own key first") }
        var files: [KeyFile] = []
        var seen: [KeyID: String] = [:]
        for path in inputs {
            let file = try load(path)
            for entry in file.entries {
                if let first = seen[entry.id] {
                    throw ToolError(
                        "Duplicate key version '\(entry.id.version)' detected: \(path):\(entry.line) repeats a key from \(first)")
                }
                seen[entry.id] = "\(path):\(entry.line)"
            }
            files.append(file)
        }
        let total = files.reduce(0) { $0 + $1.entries.count }
        var builder = try KeyArena.Builder(capacity: total, lockPolicy: lockPolicy)
        let loaded = files.flatMap { $0.load(into: &builder) }
        let arena = builder.finish()
        let keys = loaded.map { SigningKey(id: $0.id, publicKey: $0.publicKey, arena: arena, slot: $0.slot) }
        try write(keys, format: format, to: output)
        return keys
    }

    public static func write(_ keys: [SigningKey], format: KeyFileFormat, to path: String) throws {
        let bytes = try KeyFileWriter.encode(keys, format: format, lockPolicy: lockPolicy)
        do {
            try KeyFileIO.write(bytes, to: path)
        } catch {
            throw ToolError("cannot write \(path): \(error)")
        }
    }
}

extension ParsableCommand {
    /// Runs `body`, printing any error on one stderr line and exiting 1, the way MMR's tools fail.
    public static func failing(_ body: () throws -> Void) {
        do {
            try body()
        } catch let code as ExitCode {
            // Already reported; the status says which failure it was.
            Self.exit(withError: code)
        } catch {
            Posix.printError("\(commandName): \(error)")
            Self.exit(withError: ExitCode.failure)
        }
    }

    // As ArgumentParser names a command without an explicit name ("Document" is `document`).
    static var commandName: String { configuration.commandName ?? String(describing: Self.self).lowercased() }
}
