/* rss-floor.c - the idle RSS that segopsd's libraries alone cost.
 *
 * Links the same libraries as segopsd, does what segopsd does with them
 * at start-up before it reads a single event (curl_global_init, a curl
 * multi handle, a libuv loop, one jansson object), and
 * then waits to be killed. run-throughput.sh reads its VmRSS beside
 * segopsd's idle figure, so a reader can tell segopsd's own share from
 * what Debian's builds of those libraries bring with them.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>
#include <zlib.h>

int main(void)
{
        uv_loop_t *loop;
        CURLM *multi;
        json_t *j;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return 1;
        multi = curl_multi_init();
        loop = uv_default_loop();
        j = json_object();
        if (!multi || !loop || !j)
                return 1;
        /* Without NOTIFY_SOCKET this does nothing; it keeps libsystemd
         * linked, as it is in segopsd. */
        sd_notify(0, "READY=1");
        printf("ready %s %s %s\n", zlibVersion(), uv_version_string(),
               OpenSSL_version(OPENSSL_VERSION));
        fflush(stdout);
        pause();
        return 0;
}
