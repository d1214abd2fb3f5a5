// Namespaces, kernel devices and traffic: one test at a time on a 2-core machine.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
