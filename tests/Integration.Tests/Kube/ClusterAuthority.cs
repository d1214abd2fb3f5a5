using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Dataplane.Integration.Tests.Kube;

/// <summary>
/// A cluster's certificate authority, made by the test as kubeadm makes one: a CA (the
/// <c>ca.crt</c> a kubelet mounts into every pod's service-account volume) and the API server's
/// certificate signed by it, for its address and the in-cluster names.
/// </summary>
internal sealed class ClusterAuthority : IDisposable
{
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public ClusterAuthority(IPAddress apiAddress)
    {
        var caRequest = new CertificateRequest("CN=kubernetes", _caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        DateTimeOffset now = DateTimeOffset.UtcNow;
        Ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        using ECDsa serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=kube-apiserver", serverKey, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(apiAddress);
        names.AddDnsName("kubernetes");
        names.AddDnsName("kubernetes.default.svc");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using X509Certificate2 signed = request.Create(Ca, now.AddMinutes(-5), now.AddDays(1), RandomNumberGenerator.GetBytes(8));
        // Kestrel needs the key with the certificate; a PKCS#12 round trip gives one OpenSSL holds.
        using X509Certificate2 withKey = signed.CopyWithPrivateKey(serverKey);
        ServerCertificate = X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    public X509Certificate2 Ca { get; }

    public X509Certificate2 ServerCertificate { get; }

    /// <summary>ca.crt as a kubelet mounts it: the CA's certificate in PEM.</summary>
    public string CaPem => Ca.ExportCertificatePem() + "\n";

    public void Dispose()
    {
        ServerCertificate.Dispose();
        Ca.Dispose();
        _caKey.Dispose();
    }
}
