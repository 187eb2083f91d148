// The library the test target needs to exist (SwiftPM test targets test a library); it does nothing itself.
public enum BenchHost {}
