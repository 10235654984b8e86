import Testing

@testable import SigilCore

@Suite("Server names")
struct ServerNameTests {
    @Test(
        "valid names: hostnames, IPv4, [IPv6], with ports of 1 to 5 digits",
        arguments: [
            "matrix.org", "localhost", "domain", "example.org", "EXAMPLE.org", "a", "1", "a-b.c-d", "xn--bcher-kva.example",
            "example.org.", "-leading-hyphen.example",  // the grammar does not forbid these
            "1.2.3.4", "1.2.3.4:1", "192.168.0.1:8448", "example.org:8", "example.org:80", "example.org:443",
            "example.org:8448", "example.org:65535", "example.org:99999", "example.org:0",
            "[::1]", "[::1]:8448", "[1234:5678::abcd]", "[1234:5678::ABCD]:5", "[::]", "[::ffff:1.2.3.4]",
            "[2001:db8:85a3:8d3:1319:8a2e:370:7348]:443",
            "[0000:0000:0000:0000:0000:ffff:255.255.255.255]",  // 45 characters inside
            String(repeating: "a", count: 255), String(repeating: "a", count: 255) + ":65535",
        ])
    func valid(name: String) {
        #expect(ServerName.isValid(name))
    }

    @Test(
        "invalid names: quotes, spaces, empty, long ports, brackets, non-ASCII",
        arguments: [
            "", " ", "example .org", " example.org", "example.org ", "exa\tmple.org", "\"example.org\"", "example\".org",
            "example.org\\", "exa,mple.org", "example_org", "example.org/", "user@example.org", "example.org\n",
            "example.org:", "example.org:123456", "example.org:8448:1", "example.org:-1", "example.org:+80", "example.org:8a",
            ":8448", "[::1", "[::1:8448", "::1", "[]", "[:]", "[::1]:", "[::1]x", "[::1]:123456", "[::g]", "[::1]]",
            "[[::1]]", "[ ::1]", "[0000:0000:0000:0000:0000:ffff:255.255.255.2551]",
            "exämple.org", "例え.jp", "example.org\u{0}", "ｅxample.org",
            String(repeating: "a", count: 256), String(repeating: "a", count: 256) + ":1",
        ])
    func invalid(name: String) {
        #expect(!ServerName.isValid(name))
    }
}
