using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Dataplane.Node;
using Dataplane.TestSupport;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// The image deploy/build-image.sh makes, read by independent tools: skopeo reads the OCI archive
/// (its layout, manifest and config), podman loads and runs it.
/// </summary>
public class ContainerImageTests
{
    [Fact]
    public void The_image_is_an_oci_archive_of_at_most_60_MB_with_the_binary_as_entrypoint_and_its_release_labels()
    {
        string image = ContainerImage.Name;
        string skopeo = Require.Tool("skopeo", "skopeo");
        ProcessRunner.Result inspect = ProcessRunner.Run(skopeo, ["inspect", "--config", $"oci-archive:{ContainerImage.Archive}"]);
        Assert.True(inspect.ExitCode == 0, inspect.Stderr);
        using JsonDocument config = JsonDocument.Parse(inspect.Stdout);
        JsonElement c = config.RootElement.GetProperty("config");
        // The binary itself is the entrypoint: no shell in between (and none in the image).
        Assert.Equal(["/usr/local/bin/dataplane"], c.GetProperty("Entrypoint").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(["run"], c.GetProperty("Cmd").EnumerateArray().Select(e => e.GetString()));
        JsonElement labels = c.GetProperty("Labels");
        string version = Regex.Match(File.ReadAllText(Path.Combine(Repository.Root, "Directory.Build.props")), "<Version>(.*)</Version>").Groups[1].Value;
        Assert.Equal(version, labels.GetProperty("org.opencontainers.image.version").GetString());
        Assert.Matches("^[0-9a-f]{40}(-dirty)?$", labels.GetProperty("org.opencontainers.image.revision").GetString());
        Assert.Equal("amd64", config.RootElement.GetProperty("architecture").GetString());

        string podman = Require.Tool("podman", "podman");
        long size = long.Parse(ProcessRunner.Check(podman, "image", "inspect", "--format", "{{.Size}}", image).Trim(), CultureInfo.InvariantCulture);
        Assert.True(size <= 60_000_000, $"the image is {size / 1e6:0.0} MB uncompressed (goal: at most 60 MB)");

        // The binary in the image is the release and commit the labels name.
        string revision = labels.GetProperty("org.opencontainers.image.revision").GetString()!;
        Assert.Equal($"{version}+{revision.Replace("-dirty", "", StringComparison.Ordinal)}", Run(image, "/usr/local/bin/dataplane", "run", "--version").Trim());

        // What --ip-masq, doctor and the DaemonSet's init container and probes run, and nothing of a package manager or shell.
        Assert.Contains("nf_tables", Run(image, "/usr/sbin/iptables", "-V"));
        Assert.Contains("nf_tables", Run(image, "/usr/sbin/ip6tables", "-V"));
        Assert.Contains("iproute2", Run(image, "/usr/bin/ip", "-V"));
        Assert.Contains("nftables", Run(image, "/usr/sbin/nft", "--version"));
        foreach (string absent in new[] { "/bin/sh", "/usr/bin/apt", "/usr/bin/dpkg", "/usr/bin/perl", "/usr/share/doc" })
        {
            Assert.False(Exists(image, absent), $"{absent} is in the image");
        }
    }

    /// <summary>
    /// containerd (a kubelet's usual runtime) imports the archive as <c>ctr images import</c> does on a
    /// node: a private containerd (its own root, state and socket; no CRI plugin, no network) started
    /// for the test.
    /// </summary>
    [Fact]
    public void Containerd_imports_the_archive_under_its_name()
    {
        string containerd = Require.Tool("containerd", "containerd");
        string ctr = Require.Tool("ctr", "containerd");
        string image = ContainerImage.Name; // the archive is found (or built) and loaded once
        string archive = ContainerImage.Archive;
        DirectoryInfo d = Directory.CreateTempSubdirectory("dataplane-containerd-");
        string socket = Path.Combine(d.FullName, "containerd.sock");
        File.WriteAllText(Path.Combine(d.FullName, "config.toml"), $$"""
            version = 2
            root = "{{d.FullName}}/root"
            state = "{{d.FullName}}/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "{{socket}}"
            [ttrpc]
              address = "{{d.FullName}}/ttrpc.sock"
            """);
        using var daemon = Dataplane.Lab.NodeProcess.Start(null, [containerd, "--config", Path.Combine(d.FullName, "config.toml")], "containerd");
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (!File.Exists(socket) && DateTime.UtcNow < deadline && !daemon.HasExited)
            {
                Thread.Sleep(100);
            }
            Assert.True(File.Exists(socket), $"containerd did not start:\n{daemon.Output}");
            ProcessRunner.Result import = ProcessRunner.Run(ctr, ["--address", socket, "images", "import", archive], 120_000);
            Assert.True(import.ExitCode == 0, $"ctr images import: {import.Stderr}{import.Stdout}");
            string name = image[(image.IndexOf('/', StringComparison.Ordinal) + 1)..]; // without podman's localhost/
            Assert.Contains(name, ProcessRunner.Check(ctr, "--address", socket, "images", "ls", "-q"));
        }
        finally
        {
            daemon.Stop(TimeSpan.FromSeconds(10));
            d.Delete(recursive: true);
        }
    }

    private static bool Exists(string image, string path) =>
        ProcessRunner.Run(Require.Tool("podman", "podman"), [.. RunPrefix(), "--entrypoint", "/usr/bin/test", image, "-e", path], 60_000).ExitCode == 0;

    private static string Run(string image, string entrypoint, params string[] args)
    {
        ProcessRunner.Result r = ProcessRunner.Run(Require.Tool("podman", "podman"), [.. RunPrefix(), "--entrypoint", entrypoint, image, .. args], 60_000);
        return r.Stdout + r.Stderr;
    }

    private static string[] RunPrefix() =>
        ["run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none", "--pull", "never"];
}
