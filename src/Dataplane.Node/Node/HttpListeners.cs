using System.Net;
using Dataplane.Metrics;
using Serilog;

namespace Dataplane.Node;

/// <summary>One HTTP listener to open: where, the flag that asked for it (for messages), and its paths.</summary>
internal sealed record HttpListenerPlan(IPEndPoint Endpoint, string Flag, Dictionary<string, Func<HttpAnswer>> Routes)
{
    /// <summary>Listens, or says in one line why it cannot (<see cref="ConfigException"/>).</summary>
    public MetricsServer Start(ILogger log)
    {
        try
        {
            MetricsServer server = MetricsServer.Http(Endpoint, Routes);
            log.Information("Serving {Paths} at http://{Endpoint}", string.Join(" ", Routes.Keys), Endpoint);
            return server;
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new ConfigException($"{Flag} {Endpoint}: cannot listen: {e.SocketErrorCode}");
        }
    }
}

/// <summary>
/// The node's HTTP listeners (<c>/metrics</c> on <c>--metrics</c>; <c>/healthz</c> and
/// <c>/readyz</c> on <c>--healthz-ip</c>/<c>--healthz-port</c>; one listener when both name the
/// same address and port), opened at start, or after a hand-over once the predecessor let go of
/// its ports.
/// </summary>
internal sealed class HttpListeners : IDisposable
{
    private readonly List<MetricsServer> _servers = [];

    public static IReadOnlyList<HttpListenerPlan> Plan(IPEndPoint? metrics, IPEndPoint? healthz, Func<string> renderMetrics, NodeHealth health)
    {
        var listeners = new List<HttpListenerPlan>();
        if (metrics is not null)
        {
            listeners.Add(new HttpListenerPlan(metrics, "--metrics", new Dictionary<string, Func<HttpAnswer>>
            {
                ["/metrics"] = () => MetricsServer.Metrics(renderMetrics),
            }));
        }
        if (healthz is not null)
        {
            HttpListenerPlan? shared = listeners.FirstOrDefault(l => l.Endpoint.Equals(healthz));
            Dictionary<string, Func<HttpAnswer>> routes = shared?.Routes ?? [];
            routes["/healthz"] = health.Live;
            routes["/readyz"] = health.Ready;
            if (shared is null)
            {
                listeners.Add(new HttpListenerPlan(healthz, "--healthz-port", routes));
            }
        }
        return listeners;
    }

    /// <summary>Opens every listener now; a port in use is a <see cref="ConfigException"/>.</summary>
    public static HttpListeners Start(IReadOnlyList<HttpListenerPlan> plans, ILogger log)
    {
        var listeners = new HttpListeners();
        try
        {
            foreach (HttpListenerPlan plan in plans)
            {
                listeners._servers.Add(plan.Start(log));
            }
        }
        catch
        {
            listeners.Dispose();
            throw;
        }
        return listeners;
    }

    /// <summary>
    /// After a hand-over: each port the predecessor held, once it has gone (it closes them on its
    /// way out), tried for a few seconds; one still held is a warning, and that listener is left out.
    /// </summary>
    public static HttpListeners StartAfterHandover(IReadOnlyList<HttpListenerPlan> plans, ILogger log)
    {
        var listeners = new HttpListeners();
        foreach (HttpListenerPlan plan in plans)
        {
            for (var waited = System.Diagnostics.Stopwatch.StartNew(); ; Thread.Sleep(50))
            {
                try
                {
                    listeners._servers.Add(plan.Start(log));
                    break;
                }
                catch (ConfigException) when (waited.Elapsed < TimeSpan.FromSeconds(5))
                {
                    // still the predecessor's
                }
                catch (ConfigException e)
                {
                    log.Warning("{Error} (the predecessor still holds it); serving none there", e.Message);
                    break;
                }
            }
        }
        return listeners;
    }

    public void Dispose()
    {
        _servers.ForEach(s => s.Dispose());
        _servers.Clear();
    }
}
