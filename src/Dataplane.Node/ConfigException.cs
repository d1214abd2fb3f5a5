namespace Dataplane;

/// <summary>Bad configuration: the message is the one line the user sees (what is wrong and where).</summary>
internal sealed class ConfigException(string message) : Exception(message);
