using BenchmarkDotNet.Running;

namespace Dataplane.Benchmarks;

/// <summary>
/// Micro benchmarks of the per-packet path, one class per area, MemoryDiagnoser on.
/// <c>dotnet run -c Release --project bench/Dataplane.Benchmarks -- --filter '*'</c>
/// </summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
