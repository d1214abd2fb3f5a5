using System.Text.Json;
using Dataplane.Leases;

namespace Dataplane.Fuzz;

/// <summary>Lease parsing: the static cluster file, and config and lease values as etcd holds them. Only <see cref="ConfigException"/> may come out.</summary>
internal static class LeaseHarness
{
    public static void Run(byte[] input)
    {
        try
        {
            ClusterFile.Parse(input, "fuzz.json");
        }
        catch (ConfigException)
        {
        }
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(input);
        }
        catch (JsonException)
        {
            return;
        }
        using (doc)
        {
            try
            {
                NetworkConfig.Parse(doc.RootElement, "config");
            }
            catch (ConfigException)
            {
            }
            try
            {
                LeaseRecord.Parse("10.244.1.0-24", doc.RootElement, "subnets/10.244.1.0-24");
            }
            catch (ConfigException)
            {
            }
        }
    }
}
