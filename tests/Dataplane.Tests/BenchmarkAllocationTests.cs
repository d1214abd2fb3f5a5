using System.Reflection;
using System.Text.Json;
using BenchmarkDotNet.Attributes;

namespace Dataplane.Tests;

/// <summary>
/// Every benchmark method, run here directly (setup, warm-up, then measured with the thread's
/// allocation counter), against the committed <c>bench/expected-allocations.json</c>: the packet path
/// stays at 0 bytes per operation, and a benchmark without an entry fails until one is committed.
/// </summary>
[Collection(AllocationCollection.Name)]
public class BenchmarkAllocationTests
{
    public static TheoryData<string> Benchmarks()
    {
        var data = new TheoryData<string>();
        foreach (MethodInfo m in BenchmarkMethods())
        {
            data.Add($"{m.DeclaringType!.Name}.{m.Name}");
        }
        return data;
    }

    /// <summary>
    /// The benchmark as a typed call: a delegate of its own signature, its result discarded without
    /// boxing, so the harness adds nothing to what is measured (reflection's Invoke would box).
    /// </summary>
    private static Action Typed(MethodInfo method, object instance) => method.ReturnType == typeof(void)
        ? method.CreateDelegate<Action>(instance)
        : (Action)typeof(BenchmarkAllocationTests).GetMethod(nameof(Discarding), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(method.ReturnType).Invoke(null, [method, instance])!;

    private static Action Discarding<T>(MethodInfo method, object instance)
    {
        Func<T> call = method.CreateDelegate<Func<T>>(instance);
        return () => _ = call();
    }

    private static IEnumerable<MethodInfo> BenchmarkMethods() =>
        typeof(Benchmarks.Program).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods())
            .Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null)
            .OrderBy(m => m.DeclaringType!.Name).ThenBy(m => m.Name);

    [Theory]
    [MemberData(nameof(Benchmarks))]
    public void Allocates_no_more_than_committed(string name)
    {
        using JsonDocument expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "expected-allocations.json")));
        Assert.True(expected.RootElement.TryGetProperty(name, out JsonElement limitElement), $"no entry for {name} in bench/expected-allocations.json");
        long limit = limitElement.GetInt64();

        MethodInfo method = BenchmarkMethods().Single(m => $"{m.DeclaringType!.Name}.{m.Name}" == name);
        Type type = method.DeclaringType!;
        PropertyInfo? param = type.GetProperties().SingleOrDefault(p => p.GetCustomAttribute<ParamsAttribute>() is not null);
        object?[] values = param?.GetCustomAttribute<ParamsAttribute>()!.Values ?? [null];
        foreach (object? value in values)
        {
            object instance = Activator.CreateInstance(type)!;
            param?.SetValue(instance, value);
            type.GetMethods().SingleOrDefault(m => m.GetCustomAttribute<GlobalSetupAttribute>() is not null)?.Invoke(instance, null);
            int operations = method.GetCustomAttribute<BenchmarkAttribute>()!.OperationsPerInvoke;
            int invocations = limit == 0 ? 200 : 5;
            long allocated = AllocationTests.AllocatedAfterWarmUp(Typed(method, instance), invocations);
            double perOperation = allocated / (double)(invocations * operations);
            Console.WriteLine($"{name}{(param is null ? "" : $" ({param.Name}={value})")}: {perOperation:F1} bytes per operation (limit {limit})");
            Assert.True(perOperation <= limit, $"{name}{(param is null ? "" : $" ({param.Name}={value})")}: {perOperation:F1} bytes per operation, committed limit {limit}");
        }
    }
}
