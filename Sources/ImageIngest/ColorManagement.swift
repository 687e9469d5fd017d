import CLCMS2
import Synchronization

/// Converts pixels described by an embedded ICC profile to sRGB, with Little CMS 2.
///
/// Conversions use the perceptual rendering intent (matrix-shaper profiles, which have no perceptual
/// table, fall back to relative colorimetric, clipping colours outside sRGB). Alpha is carried over
/// unchanged. An image without a usable profile is treated as sRGB: a profile that cannot be parsed,
/// that is a device link, abstract or named-colour profile, or whose colour space does not match the
/// pixels leaves the image unchanged (except CMYK pixels, see ``toSRGB(_:iccProfile:isCMYK:)``).
///
/// Parsed profiles and their transforms are kept in a small least-recently-used cache keyed by the
/// profile bytes, so an image set that shares a profile parses it once. All functions are safe to call
/// from several threads at once; they are synchronous and CPU-bound, so call them from a
/// ``BlockingThreadPool`` thread.
public enum ColorConverter {
    /// How many distinct profiles the transform cache keeps. Default 8.
    public static let cacheCapacity = 8

    /// `image` converted from the colour space that `iccProfile` describes to sRGB.
    ///
    /// - RGB pixels (`isCMYK == false`) with an RGB profile are transformed; with a gray profile the
    ///   pixels are taken as gray (the mean of red, green and blue) and mapped through the profile's tone
    ///   curve. With any other or an unusable profile, the image is returned unchanged.
    /// - CMYK pixels (`isCMYK == true`: each 4-byte pixel holds cyan, magenta, yellow and black ink
    ///   amounts, 0 = no ink, in place of red, green, blue and alpha; Adobe's inverted CMYK JPEGs must be
    ///   un-inverted by the caller) are transformed with a CMYK profile; without one they are converted
    ///   with the naive formula `R = (255 - C) × (255 - K) / 255` (and likewise for G and B). The result
    ///   is opaque.
    ///
    /// - Throws: ``IngestError/Code/badDimensions`` if the image's pixel buffer does not match its size.
    public static func toSRGB(_ image: RGBAImage, iccProfile: [UInt8], isCMYK: Bool = false) throws(IngestError)
        -> RGBAImage
    {
        guard image.width >= 0, image.height >= 0, image.pixels.count == image.width * image.height * 4 else {
            throw IngestError(.badDimensions, "the \(image.width)x\(image.height) image has a malformed pixel buffer")
        }
        switch (conversion(for: iccProfile), isCMYK) {
        case (.rgb(let transform), false):
            return transform.apply(to: image, opaque: false)
        case (.gray(let table), false):
            return applyGray(table, to: image)
        case (.cmyk(let transform), true):
            return transform.apply(to: image, opaque: true)
        case (_, true):
            return naiveCMYK(image)
        case (_, false):
            return image
        }
    }

    // MARK: - Conversions

    /// What a profile converts, once parsed.
    enum Conversion: Sendable {
        /// The profile is unusable or does not describe RGB, gray or CMYK pixels.
        case unusable
        /// RGBA8 → RGBA8, alpha copied.
        case rgb(Transform)
        /// Gray level → sRGB triplet: 256 × (R, G, B).
        case gray([UInt8])
        /// CMYK8 → RGBA8 (alpha not written).
        case cmyk(Transform)
    }

    /// An lcms2 transform, deleted when the last reference goes away (so a transform evicted from the
    /// cache stays valid for calls still using it). lcms2 transforms may be used by several threads.
    final class Transform: @unchecked Sendable {
        let handle: cmsHTRANSFORM

        init(_ handle: cmsHTRANSFORM) {
            self.handle = handle
        }

        deinit {
            cmsDeleteTransform(handle)
        }

        func apply(to image: RGBAImage, opaque: Bool) -> RGBAImage {
            let count = image.width * image.height
            var output = [UInt8](repeating: opaque ? 255 : 0, count: count * 4)
            image.pixels.withUnsafeBytes { source in
                output.withUnsafeMutableBytes { destination in
                    // Bounded chunks keep the pixel count within cmsUInt32Number.
                    let chunk = 1 << 20
                    var start = 0
                    while start < count {
                        let length = min(chunk, count - start)
                        cmsDoTransform(
                            handle, source.baseAddress! + start * 4, destination.baseAddress! + start * 4,
                            cmsUInt32Number(length))
                        start += length
                    }
                }
            }
            if opaque {
                for index in stride(from: 3, to: output.count, by: 4) { output[index] = 255 }
            }
            return RGBAImage(width: image.width, height: image.height, pixels: output)
        }
    }

    static func applyGray(_ table: [UInt8], to image: RGBAImage) -> RGBAImage {
        var output = image.pixels
        output.withUnsafeMutableBufferPointer { pixels in
            table.withUnsafeBufferPointer { table in
                var index = 0
                while index < pixels.count {
                    let level = (Int(pixels[index]) + Int(pixels[index + 1]) + Int(pixels[index + 2]) + 1) / 3
                    pixels[index] = table[level * 3]
                    pixels[index + 1] = table[level * 3 + 1]
                    pixels[index + 2] = table[level * 3 + 2]
                    index += 4
                }
            }
        }
        return RGBAImage(width: image.width, height: image.height, pixels: output)
    }

    static func naiveCMYK(_ image: RGBAImage) -> RGBAImage {
        var output = image.pixels
        output.withUnsafeMutableBufferPointer { pixels in
            var index = 0
            while index < pixels.count {
                let white = 255 - Int(pixels[index + 3])
                for channel in 0..<3 {
                    pixels[index + channel] = UInt8(((255 - Int(pixels[index + channel])) * white + 127) / 255)
                }
                pixels[index + 3] = 255
                index += 4
            }
        }
        return RGBAImage(width: image.width, height: image.height, pixels: output)
    }

    // MARK: - Profile cache

    struct Cache: ~Copyable {
        /// Most recently used first.
        var entries: [(hash: Int, profile: [UInt8], conversion: Conversion)] = []
    }

    static let cache = Mutex(Cache())

    /// The conversion for `profile`, from the cache or freshly built (and cached).
    static func conversion(for profile: [UInt8]) -> Conversion {
        guard !profile.isEmpty, profile.count <= Int(UInt32.max) else { return .unusable }
        let hash = profile.hashValue
        let cached: Conversion? = cache.withLock { cache in
            guard let index = cache.entries.firstIndex(where: { $0.hash == hash && $0.profile == profile }) else {
                return nil
            }
            let entry = cache.entries.remove(at: index)
            cache.entries.insert(entry, at: 0)
            return entry.conversion
        }
        if let cached { return cached }
        // Built outside the lock; two threads racing on a new profile both build it, one result is kept.
        let conversion = makeConversion(profile)
        cache.withLock { cache in
            guard !cache.entries.contains(where: { $0.hash == hash && $0.profile == profile }) else { return }
            cache.entries.insert((hash, profile, conversion), at: 0)
            if cache.entries.count > cacheCapacity { cache.entries.removeLast() }
        }
        return conversion
    }

    /// lcms2 reports problems with a profile through a process-wide handler that logs to stderr by
    /// default; replace it with one that ignores them (failures are seen through return values).
    static let silenceErrors: Void = {
        cmsSetLogErrorHandler { _, _, _ in }
    }()

    static func makeConversion(_ bytes: [UInt8]) -> Conversion {
        _ = silenceErrors
        guard
            let profile = bytes.withUnsafeBytes({
                cmsOpenProfileFromMem($0.baseAddress, cmsUInt32Number($0.count))
            })
        else { return .unusable }
        defer { cmsCloseProfile(profile) }
        let deviceClass = cmsGetDeviceClass(profile)
        guard deviceClass != cmsSigLinkClass, deviceClass != cmsSigAbstractClass, deviceClass != cmsSigNamedColorClass
        else { return .unusable }
        guard let sRGB = cmsCreate_sRGBProfile() else { return .unusable }
        defer { cmsCloseProfile(sRGB) }
        let intent = cmsUInt32Number(INTENT_PERCEPTUAL)
        switch cmsGetColorSpace(profile) {
        case cmsSigRgbData:
            guard
                let handle = cmsCreateTransform(
                    profile, ig_lcms_type_rgba_8(), sRGB, ig_lcms_type_rgba_8(), intent,
                    cmsUInt32Number(cmsFLAGS_COPY_ALPHA))
            else { return .unusable }
            return .rgb(Transform(handle))
        case cmsSigCmykData:
            guard
                let handle = cmsCreateTransform(
                    profile, ig_lcms_type_cmyk_8(), sRGB, ig_lcms_type_rgba_8(), intent, 0)
            else { return .unusable }
            return .cmyk(Transform(handle))
        case cmsSigGrayData:
            guard
                let handle = cmsCreateTransform(profile, ig_lcms_type_gray_8(), sRGB, ig_lcms_type_rgb_8(), intent, 0)
            else { return .unusable }
            defer { cmsDeleteTransform(handle) }
            let levels = (0...255).map { UInt8($0) }
            var table = [UInt8](repeating: 0, count: 256 * 3)
            levels.withUnsafeBytes { source in
                table.withUnsafeMutableBytes { destination in
                    cmsDoTransform(handle, source.baseAddress, destination.baseAddress, 256)
                }
            }
            return .gray(table)
        default:
            return .unusable
        }
    }

    // MARK: - Profiles for tests

    /// An RGB matrix-shaper profile with the given chromaticities and a pure gamma curve, as ICC bytes.
    package static func rgbProfile(
        white: (x: Double, y: Double), red: (x: Double, y: Double), green: (x: Double, y: Double),
        blue: (x: Double, y: Double), gamma: Double
    ) -> [UInt8] {
        var whitePoint = cmsCIExyY(x: white.x, y: white.y, Y: 1)
        var primaries = cmsCIExyYTRIPLE(
            Red: cmsCIExyY(x: red.x, y: red.y, Y: 1), Green: cmsCIExyY(x: green.x, y: green.y, Y: 1),
            Blue: cmsCIExyY(x: blue.x, y: blue.y, Y: 1))
        guard let curve = cmsBuildGamma(nil, gamma) else { return [] }
        defer { cmsFreeToneCurve(curve) }
        let curves: [OpaquePointer?] = [curve, curve, curve]
        guard
            let profile = curves.withUnsafeBufferPointer({
                cmsCreateRGBProfile(&whitePoint, &primaries, $0.baseAddress)
            })
        else { return [] }
        defer { cmsCloseProfile(profile) }
        return save(profile)
    }

    /// The Adobe RGB (1998) colour space as ICC bytes (D65 white, gamma 563/256).
    package static func adobeRGBProfile() -> [UInt8] {
        rgbProfile(
            white: (0.3127, 0.3290), red: (0.64, 0.33), green: (0.21, 0.71), blue: (0.15, 0.06), gamma: 563.0 / 256)
    }

    /// lcms2's built-in sRGB profile as ICC bytes.
    package static func sRGBProfile() -> [UInt8] {
        guard let profile = cmsCreate_sRGBProfile() else { return [] }
        defer { cmsCloseProfile(profile) }
        return save(profile)
    }

    /// A gray profile with a D65 white point and a pure gamma curve, as ICC bytes.
    package static func grayProfile(gamma: Double) -> [UInt8] {
        guard let curve = cmsBuildGamma(nil, gamma) else { return [] }
        defer { cmsFreeToneCurve(curve) }
        var white = cmsCIExyY(x: 0.3127, y: 0.3290, Y: 1)
        guard let profile = cmsCreateGrayProfile(&white, curve) else { return [] }
        defer { cmsCloseProfile(profile) }
        return save(profile)
    }

    private static func save(_ profile: cmsHPROFILE) -> [UInt8] {
        var size: cmsUInt32Number = 0
        guard cmsSaveProfileToMem(profile, nil, &size) != 0, size > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let ok = bytes.withUnsafeMutableBytes { cmsSaveProfileToMem(profile, $0.baseAddress, &size) }
        return ok != 0 ? Array(bytes[0..<Int(size)]) : []
    }
}
