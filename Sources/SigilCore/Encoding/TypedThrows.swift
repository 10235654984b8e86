/// `Array.withUnsafeBytes` is `rethrows`, which erases typed errors; this keeps them.
@inline(__always)
func withBytes<C: Collection<UInt8>, R, E: Error>(
    _ bytes: C, _ body: (UnsafeRawBufferPointer) throws(E) -> R
) throws(E) -> R {
    let result: Result<R, E>
    if let direct = bytes.withContiguousStorageIfAvailable({ buffer in
        Result { () throws(E) -> R in try body(UnsafeRawBufferPointer(buffer)) }
    }) {
        result = direct
    } else {
        result = Array(bytes).withUnsafeBytes { raw in Result { () throws(E) -> R in try body(raw) } }
    }
    return try result.get()
}

/// `Array.withUnsafeMutableBytes` keeping typed errors.
@inline(__always)
func withMutableBytes<R, E: Error>(
    _ bytes: inout [UInt8], _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
) throws(E) -> R {
    let result: Result<R, E> = bytes.withUnsafeMutableBytes { raw in Result { () throws(E) -> R in try body(raw) } }
    return try result.get()
}
