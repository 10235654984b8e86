import SigilCore

/// Reads fields out of a STATS object without trusting its shape: a daemon older or newer than
/// this tool may lack a section or carry one in another form. A missing field is simply absent;
/// a field of the wrong type is absent too, and noted in `problems` (the caller prints them), so
/// one odd field costs its own series and nothing else.
struct StatsReader {
    private(set) var problems: [String] = []

    /// `path` names the field in problems, as `reloads.ok` or `listeners["mmr"].busy`.
    mutating func integer(_ object: JSONObject?, _ key: String, at path: String) -> Int64? {
        guard let value = object?[key] else { return nil }
        guard case .integer(let number) = value else {
            problems.append("STATS field \(path)\(key): expected an integer, found \(kind(value))")
            return nil
        }
        guard number >= 0 else {
            problems.append("STATS field \(path)\(key): expected a count, found \(number)")
            return nil
        }
        return number
    }

    mutating func bool(_ object: JSONObject?, _ key: String, at path: String) -> Bool? {
        guard let value = object?[key] else { return nil }
        guard case .bool(let flag) = value else {
            problems.append("STATS field \(path)\(key): expected true or false, found \(kind(value))")
            return nil
        }
        return flag
    }

    mutating func object(_ object: JSONObject?, _ key: String, at path: String) -> JSONObject? {
        guard let value = object?[key] else { return nil }
        guard case .object(let inner) = value else {
            problems.append("STATS field \(path)\(key): expected an object, found \(kind(value))")
            return nil
        }
        return inner
    }

    mutating func array(_ object: JSONObject?, _ key: String, at path: String) -> [JSONValue]? {
        guard let value = object?[key] else { return nil }
        guard case .array(let items) = value else {
            problems.append("STATS field \(path)\(key): expected an array, found \(kind(value))")
            return nil
        }
        return items.values
    }

    /// The members of an object whose values are all objects (operations, listeners, servers);
    /// members of another type are skipped and noted.
    mutating func objects(_ object: JSONObject?, at path: String) -> [(key: String, value: JSONObject)] {
        guard let object else { return [] }
        var out: [(key: String, value: JSONObject)] = []
        for member in object {
            if case .object(let inner) = member.value {
                out.append((member.key, inner))
            } else {
                problems.append("STATS field \(path)\(Self.subscriptText(member.key)): expected an object, found \(kind(member.value))")
            }
        }
        return out
    }

    mutating func note(_ problem: String) { problems.append(problem) }

    /// `["name"]`, quoted so that a hostile name cannot make a problem line ambiguous.
    static func subscriptText(_ key: String) -> String {
        var quoted = ""
        for scalar in key.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F: quoted += "\\u{\(String(scalar.value, radix: 16))}"
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return "[\"\(quoted)\"]"
    }

    private func kind(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool: return "a boolean"
        case .integer: return "an integer"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }
}
