namespace Dataplane.TestSupport;

/// <summary>A test's requirement (root, a device, a program) is missing: the test fails with this message.</summary>
internal sealed class RequirementMissingException(string message) : Exception(message);
